"""Slice 10: automated backups to GCS: installed by cron, files in the bucket, a restore that succeeds.

Apply installs backups/crontab as /etc/cron.d/aistack-backups (OPS_BACKUP_CRON_FILE)
with the project's directory filled in. Verify checks the installed jobs,
runs the daily backup job the way cron runs it (its command line from the
installed file, through its SHELL, with only cron's environment: no
SUDO_UID, no operator's variables), checks its objects appear in the bucket
with a manifest, and drills it (restore into scratch databases, every
table identical). The drill decrypts with the identity given at run time
(`ops slice 10 --apply --identity FILE`, or `-` for stdin): vps.env holds
only the recipients, and the crontab runs no drill (the identity stays off the VM).
"""

from __future__ import annotations

import os
import pwd
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ops.config import Settings
from ops.errors import OpsError
from ops.slices.base import Check, Target
from ops.slices.cron import CronFile
from ops.slices.cron import cron_job as _cron_job

NUMBER = 10
TITLE = "Automated backups"
REQUIRES: tuple[int, ...] = ()
SERVICES: tuple[str, ...] = ()
FILES: tuple[str, ...] = ("backups/crontab",)
DATABASES: tuple[str, ...] = ()
DAILY_JOB = "backup run --schedule daily"
# the crontab's lock and log may be set in vps.env (tests point them into a temp dir)
CRON = CronFile(
    Path("backups/crontab"),
    "/etc/cron.d/aistack-backups",
    "OPS_BACKUP_CRON_FILE",
    rendered=("OPS_BACKUP_LOCK", "OPS_BACKUP_LOG"),
    log_variable="OPS_BACKUP_LOG",
)


def cron_file(settings: Settings) -> Path:
    return CRON.target(settings)


def render(settings: Settings) -> str:
    """Return backups/crontab with OPS_PROJECT_DIR set to this project's directory (and the lock and log if set)."""
    return CRON.render(settings)


def cron_job(text: str, marker: str = DAILY_JOB) -> tuple[dict[str, str], str, str]:
    """Given a cron.d file, return (its variables, the user, the command) of the job containing marker."""
    return _cron_job(text, marker)


def run_as_cron(text: str, marker: str = DAILY_JOB) -> tuple[int, str]:
    """Run the job containing marker as cron would; return its exit status and what it appended to OPS_BACKUP_LOG."""
    return CRON.run_job(text, marker)


def install(settings: Settings) -> list[str]:
    """Install (or, if backups/crontab is gone, remove) the cron file; return what changed."""
    return CRON.install(settings)


def verify(target: Target) -> list[Check]:
    if target.settings is None:
        return [Check("backups", False, "no project settings to reach the bucket: run it as `make slice-10`")]
    from ops.backup import catalog
    from ops.backup.context import backup_context
    from ops.backup.drill import run_drill

    settings = target.settings
    installed, detail = CRON.installed(settings)
    checks = [Check("jobs installed", installed, detail)]
    try:
        ctx = backup_context(settings)
        started = datetime.now(UTC) - timedelta(seconds=1)
        clock = time.monotonic()
        status, output = run_as_cron(cron_file(settings).read_text() if installed else render(settings))
        user, job_user = pwd.getpwuid(os.geteuid()).pw_name, cron_job(render(settings))[1]
        as_whom = "" if os.geteuid() == 0 or job_user == user else f" (as {user}: cron runs it as {job_user})"  # root: as cron
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
