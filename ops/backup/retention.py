"""``ops backup prune``: delete what the plan's retention no longer needs, and never the last good backup.

Runs have four kinds: the scheduled ``daily`` and ``weekly`` runs, and
``manual`` (``ops backup run`` by hand) and ``pre-restore`` (the safety
backup of a live restore). Daily, manual and pre-restore runs are kept
OPS_BACKUP_KEEP_DAILY_DAYS (30), weekly ones OPS_BACKUP_KEEP_WEEKLY_WEEKS (4).

Whatever their age, prune keeps the newest run holding each source (a good
copy: a partial run does not hold the source that failed in it) and the
newest run of each kind. If the newest daily or weekly run holding anything
is past its retention, backups have stopped: prune deletes nothing and
fails, so the alarm is raised instead of the history erased. Only scheduled
runs count for that: a manual or pre-restore run never hides it. Incomplete
runs (objects, no manifest) older than a day are deleted; a run whose
manifest exists but cannot be parsed (a newer ops may have written it) is
never deleted, only reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ops.backup import catalog
from ops.backup.catalog import RunInfo
from ops.backup.context import BackupContext
from ops.backup.manifest import run_schedule, run_time
from ops.errors import OpsError
from ops.notify import Notice, NotifyConfig, notify

log = logging.getLogger("ops.backup")
INCOMPLETE_GRACE = timedelta(days=1)  # a run younger than this may still be uploading
SCHEDULED = ("daily", "weekly")


class RetentionRefused(OpsError):
    """Pruning would delete the only backups left; nothing was deleted."""


@dataclass
class PrunePlan:
    delete: list[tuple[str, str]] = field(default_factory=list)  # (run id, why)
    keep: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # runs a person must look at (never deleted)
    deleted_objects: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "delete": [{"id": r, "why": w} for r, w in self.delete],
            "keep": [{"id": r, "why": w} for r, w in self.keep],
            "problems": self.problems,
            "deleted_objects": self.deleted_objects,
        }


def plan_prune(runs: list[RunInfo], now: datetime, keep_daily: timedelta, keep_weekly: timedelta) -> PrunePlan:
    """Given the bucket's runs and the time, return what to delete and keep, with reasons.

    Raise RetentionRefused if the newest scheduled daily or weekly run holding
    anything is past its retention (backups have stopped).
    """
    plan = PrunePlan()
    usable: list[RunInfo] = []
    for run in sorted(runs, key=lambda r: run_time(r.run_id)):
        if run.manifest is not None:
            usable.append(run)
        elif run.unreadable:
            plan.keep.append((run.run_id, f"manifest unreadable, never deleted automatically: {run.problem}"))
            plan.problems.append(f"{run.run_id}: {run.problem}; look at it (a newer ops may have written it), delete it by hand")
        elif now - run_time(run.run_id) > INCOMPLETE_GRACE:
            plan.delete.append((run.run_id, f"incomplete: {run.problem}"))
        else:
            plan.keep.append((run.run_id, "incomplete but recent: may still be running"))

    protected: dict[str, list[str]] = {}
    newest_of: dict[str, RunInfo] = {}
    for run in usable:  # oldest first: the last one seen wins
        assert run.manifest is not None
        for source in run.manifest.held():
            newest_of[f"complete backup of {source}"] = run
        newest_of[f"{run_schedule(run.run_id)} run"] = run
    for what, run in sorted(newest_of.items()):
        protected.setdefault(run.run_id, []).append(f"newest {what}")

    refusals = []
    for kind in SCHEDULED:
        keep = keep_weekly if kind == "weekly" else keep_daily
        holding = [r for r in usable if run_schedule(r.run_id) == kind and r.manifest and r.manifest.held()]
        if holding and now - run_time(holding[-1].run_id) > keep:
            age = now - run_time(holding[-1].run_id)
            refusals.append(
                f"the newest {kind} backup {holding[-1].run_id} is {age.days} days old, past its {keep.days}-day "
                "retention: backups have stopped; fix them first"
            )
    if refusals:
        raise RetentionRefused("prune deleted nothing: " + "; ".join(refusals))

    for run in usable:
        kind = run_schedule(run.run_id)
        keep = keep_weekly if kind == "weekly" else keep_daily
        if run.run_id in protected:
            plan.keep.append((run.run_id, "; ".join(protected[run.run_id])))
        elif now - run_time(run.run_id) > keep:
            plan.delete.append((run.run_id, f"{kind}, older than {keep.days} days"))
        else:
            plan.keep.append((run.run_id, f"{kind}, within {keep.days} days"))
    return plan


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
    for problem in plan.problems:
        log.warning("prune kept %s", problem)
    if not dry_run:
        objects = {r.run_id: r.objects for r in runs}
        for run_id, _ in plan.delete:
            # the manifest first: a half-deleted run is then incomplete, never a broken "complete" one
            for name in sorted(objects[run_id], key=lambda n: not n.endswith("/manifest.json")):
                ctx.bucket.delete(name)
                plan.deleted_objects += 1
    return plan
