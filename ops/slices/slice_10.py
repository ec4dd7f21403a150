"""Slice 10: automated backups to GCS: installed by cron, files in the bucket, a restore that succeeds.

Apply installs backups/crontab as /etc/cron.d/aistack-backups (OPS_BACKUP_CRON_FILE)
with the project's directory filled in. Verify checks the installed jobs,
runs a backup (its objects must appear in the bucket with a manifest) and a
drill (restore into scratch databases, every table identical).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from ops.config import Settings
from ops.errors import OpsError
from ops.slices.base import Check, Target

NUMBER = 10
TITLE = "Automated backups"
REQUIRES: tuple[int, ...] = ()
SERVICES: tuple[str, ...] = ()
FILES: tuple[str, ...] = ("backups/crontab",)
DATABASES: tuple[str, ...] = ()
CRONTAB = Path("backups/crontab")
DEFAULT_CRON_FILE = "/etc/cron.d/aistack-backups"


def cron_file(settings: Settings) -> Path:
    return Path(settings.effective_env.get("OPS_BACKUP_CRON_FILE") or DEFAULT_CRON_FILE)


def render(settings: Settings) -> str:
    """Return backups/crontab with OPS_PROJECT_DIR set to this project's directory."""
    text = (settings.project_dir / CRONTAB).read_text()
    return re.sub(r"(?m)^OPS_PROJECT_DIR=.*$", f"OPS_PROJECT_DIR={settings.project_dir}", text)


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
    from ops.backup.context import backup_context
    from ops.backup.drill import run_drill
    from ops.backup.run import run_backup

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
        report = run_backup(ctx, "manual")
        stored = {o.name for o in ctx.bucket.list(ctx.object_name(report.run_id, ""))}
        missing = [e.object for e in report.entries if e.object not in stored]
        checks.append(
            Check(
                "files appear in GCS",
                bool(report.entries) and not missing,
                f"backup {report.run_id}: {len(report.entries)} objects in gs://{ctx.bucket.name}"
                + (f", missing {missing}" if missing else ""),
            )
        )
        drill = run_drill(ctx, report.run_id)
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
