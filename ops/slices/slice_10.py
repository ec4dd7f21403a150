"""Slice 10: automated backups to GCS: installed by cron, files in the bucket, a restore that succeeds.

Apply installs backups/crontab as /etc/cron.d/aistack-backups (OPS_BACKUP_CRON_FILE)
with the project's directory filled in. Verify checks the installed jobs,
runs the daily backup job the way cron runs it (its command line from the
installed file, through its SHELL, with only cron's environment: no
SUDO_UID, no operator's variables), checks its objects appear in the bucket
with a manifest, and drills it (restore into scratch databases, every
table identical).
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ops.config import Settings
from ops.errors import ConfigError, OpsError
from ops.slices.base import Check, Target

NUMBER = 10
TITLE = "Automated backups"
REQUIRES: tuple[int, ...] = ()
SERVICES: tuple[str, ...] = ()
FILES: tuple[str, ...] = ("backups/crontab",)
DATABASES: tuple[str, ...] = ()
CRONTAB = Path("backups/crontab")
DEFAULT_CRON_FILE = "/etc/cron.d/aistack-backups"
# crontab variables a project may set in vps.env (tests point them into a temp dir)
RENDERED = ("OPS_BACKUP_LOCK", "OPS_BACKUP_LOG")
DAILY_JOB = "backup run --schedule daily"
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def cron_file(settings: Settings) -> Path:
    return Path(settings.effective_env.get("OPS_BACKUP_CRON_FILE") or DEFAULT_CRON_FILE)


def render(settings: Settings) -> str:
    """Return backups/crontab with OPS_PROJECT_DIR set to this project's directory (and the lock and log if set)."""
    text = (settings.project_dir / CRONTAB).read_text()
    values = {"OPS_PROJECT_DIR": str(settings.project_dir)}
    values.update({name: settings.effective_env[name] for name in RENDERED if settings.effective_env.get(name)})
    for name, value in values.items():
        text = re.sub(rf"(?m)^{name}=.*$", f"{name}={value}".replace("\\", "\\\\"), text)
    return text


def cron_job(text: str, marker: str = DAILY_JOB) -> tuple[dict[str, str], str, str]:
    """Given a cron.d file, return (its variables, the user, the command) of the job containing marker.

    Raise ConfigError if no job has it.
    """
    variables: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if match := ASSIGNMENT.match(line):
            variables[match.group(1)] = match.group(2)
            continue
        fields = line.split(None, 6)
        if len(fields) == 7 and marker in fields[6]:
            return variables, fields[5], fields[6]
    raise ConfigError(f"no job running `ops {marker}` in the cron file")


def run_as_cron(text: str, marker: str = DAILY_JOB) -> tuple[int, str]:
    """Run the job containing marker as cron would: its SHELL, only cron's environment, from the user's home.

    Return its exit status and what it appended to its log (OPS_BACKUP_LOG), or its output if it has none.
    """
    variables, user, command = cron_job(text, marker)
    try:
        home = pwd.getpwnam(user).pw_dir
    except KeyError:
        home = "/"
    env = {"HOME": home, "LOGNAME": user, "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin", **variables}  # all cron gives
    log = Path(variables.get("OPS_BACKUP_LOG", "/dev/null"))
    offset = log.stat().st_size if log.is_file() else 0
    proc = subprocess.run(
        [env["SHELL"], "-c", command],
        env=env,
        cwd=home if Path(home).is_dir() else "/",
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    output = proc.stdout + proc.stderr
    if log.is_file():
        with log.open(errors="replace") as handle:
            handle.seek(offset)
            output = handle.read() + output
    return proc.returncode, output.strip()


def install(settings: Settings) -> list[str]:
    """Install (or, if backups/crontab is gone, remove) the cron file; return what changed."""
    target = cron_file(settings)
    if not (settings.project_dir / CRONTAB).exists():
        if target.exists():
            target.unlink()
            return [f"removed {target}"]
        return []
    wanted = render(settings)
    if target.exists() and target.read_text() == wanted:
        return []
    target.parent.mkdir(parents=True, exist_ok=True)
    # cron reads files in /etc/cron.d that are root's and not group/other-writable; write atomically
    with tempfile.NamedTemporaryFile("w", dir=target.parent, prefix=".aistack-", delete=False) as tmp:
        tmp.write(wanted)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, target)
    return [f"installed {target}"]


def verify(target: Target) -> list[Check]:
    if target.settings is None:
        return [Check("backups", False, "no project settings to reach the bucket: run it as `make slice-10`")]
    from ops.backup import catalog
    from ops.backup.context import backup_context
    from ops.backup.drill import run_drill

    settings = target.settings
    installed = cron_file(settings)
    checks = [
        Check(
            "jobs installed",
            installed.exists() and installed.read_text() == render(settings),
            f"{installed} {'matches backups/crontab' if installed.exists() else 'is missing'}",
        )
    ]
    try:
        ctx = backup_context(settings)
        started = datetime.now(UTC) - timedelta(seconds=1)
        clock = time.monotonic()
        status, output = run_as_cron(installed.read_text() if installed.exists() else render(settings))
        user = pwd.getpwuid(os.geteuid()).pw_name
        as_whom = "" if cron_job(render(settings))[1] == user else f" (as {user}: cron would run it as root)"
        checks.append(
            Check(
                "backup runs as cron runs it",
                status == 0,
                f"the daily job exited {status} after {time.monotonic() - clock:.0f} s{as_whom}"
                + (f": {output[-600:]}" if status else ""),
            )
        )
        if status != 0:
            return checks
        found = [r for r in catalog.runs(ctx) if r.manifest and r.manifest.created >= started]
        daily = [r.manifest for r in found if r.manifest and r.manifest.schedule == "daily"]
        if not daily:
            checks.append(Check("files appear in GCS", False, f"no daily backup since {started:%H:%M:%S} in the bucket"))
            return checks
        manifest = daily[-1]
        stored = {o.name for o in ctx.bucket.list(ctx.object_name(manifest.run_id, ""))}
        missing = [e.object for e in manifest.entries if e.object not in stored]
        checks.append(
            Check(
                "files appear in GCS",
                bool(manifest.entries) and not missing,
                f"backup {manifest.run_id}: {len(manifest.entries)} objects in gs://{ctx.bucket.name}"
                + (f", missing {missing}" if missing else ""),
            )
        )
        drill = run_drill(ctx, manifest.run_id)
        same = sum(t.ok for t in drill.tables)
        checks.append(
            Check(
                "restore test succeeds",
                drill.ok,
                f"{same}/{len(drill.tables)} tables identical; {'; '.join(drill.problems) or 'no problems'}",
            )
        )
    except OpsError as exc:
        checks.append(Check("backup and drill", False, str(exc)))
    return checks
