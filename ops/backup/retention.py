"""``ops backup prune``: delete what the plan's retention no longer needs, and never the last good backup.

Daily runs (and manual and pre-restore ones) are kept OPS_BACKUP_KEEP_DAILY_DAYS
(30), weekly volume archives OPS_BACKUP_KEEP_WEEKLY_WEEKS (4). The newest
complete run of each kind is always kept. If the newest daily or weekly
backup is itself past its retention, backups have stopped: prune deletes
nothing and fails, so the alarm is raised instead of the history erased.
Incomplete runs (no manifest) older than a day are deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ops.backup import catalog
from ops.backup.catalog import RunInfo
from ops.backup.context import BackupContext
from ops.backup.manifest import run_schedule, run_time
from ops.errors import OpsError
from ops.notify import Notice, NotifyConfig, notify

INCOMPLETE_GRACE = timedelta(days=1)  # a run younger than this may still be uploading
GUARDED = ("daily", "weekly")


class RetentionRefused(OpsError):
    """Pruning would delete the only backups left; nothing was deleted."""


@dataclass
class PrunePlan:
    delete: list[tuple[str, str]] = field(default_factory=list)  # (run id, why)
    keep: list[tuple[str, str]] = field(default_factory=list)
    deleted_objects: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "delete": [{"id": r, "why": w} for r, w in self.delete],
            "keep": [{"id": r, "why": w} for r, w in self.keep],
            "deleted_objects": self.deleted_objects,
        }


def plan_prune(runs: list[RunInfo], now: datetime, keep_daily: timedelta, keep_weekly: timedelta) -> PrunePlan:
    """Given the bucket's runs and the time, return what to delete and keep, with reasons.

    Raise RetentionRefused if the newest daily or weekly backup is past its
    retention (backups have stopped).
    """
    plan = PrunePlan()
    complete: dict[str, list[RunInfo]] = {}
    for run in runs:
        if run.complete:
            kind = "weekly" if run_schedule(run.run_id) == "weekly" else "daily"
            complete.setdefault(kind, []).append(run)
        elif now - run_time(run.run_id) > INCOMPLETE_GRACE:
            plan.delete.append((run.run_id, f"incomplete: {run.problem}"))
        else:
            plan.keep.append((run.run_id, "incomplete but recent: may still be running"))
    refusals = []
    for kind, found in complete.items():
        keep = keep_weekly if kind == "weekly" else keep_daily
        found.sort(key=lambda r: run_time(r.run_id))
        newest = found[-1]
        age = now - run_time(newest.run_id)
        if age > keep and run_schedule(newest.run_id) in GUARDED:
            refusals.append(
                f"the newest {kind} backup {newest.run_id} is {age.days} days old, past its {keep.days}-day retention: "
                "backups have stopped; fix them first"
            )
        plan.keep.append((newest.run_id, f"newest complete {kind} backup"))
        for run in found[:-1]:
            if now - run_time(run.run_id) > keep:
                plan.delete.append((run.run_id, f"{kind}, older than {keep.days} days"))
            else:
                plan.keep.append((run.run_id, f"{kind}, within {keep.days} days"))
    if refusals:
        raise RetentionRefused("prune deleted nothing: " + "; ".join(refusals))
    return plan  # the newest complete run of each kind is kept above, so some complete run always remains


def run_prune(ctx: BackupContext, dry_run: bool = False, now: datetime | None = None) -> PrunePlan:
    """Given the context, delete the runs retention no longer needs; return what was (or would be) deleted.

    Raise RetentionRefused (after notifying) instead of deleting the last good backups.
    """
    runs = catalog.runs(ctx)
    try:
        plan = plan_prune(
            runs, now or datetime.now(UTC), timedelta(days=ctx.keep_daily_days), timedelta(weeks=ctx.keep_weekly_weeks)
        )
    except RetentionRefused as exc:
        notify(NotifyConfig(ctx.ping_url), Notice("prune", False, str(exc)))
        raise
    plan.dry_run = dry_run
    if not dry_run:
        objects = {r.run_id: r.objects for r in runs}
        for run_id, _ in plan.delete:
            # the manifest first: a half-deleted run is then incomplete, never a broken "complete" one
            for name in sorted(objects[run_id], key=lambda n: not n.endswith("/manifest.json")):
                ctx.bucket.delete(name)
                plan.deleted_objects += 1
    return plan
