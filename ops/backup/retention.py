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

Drill records (``<prefix>/drills/``, ops.backup.drill) are no runs: they
are kept as long as the longer of the two windows, and the newest passed one
at any age (the drill alert reads it). An object there whose name is no
record's is never deleted. They appear in the plan as ``drills/<name>``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ops.backup import catalog
from ops.backup.catalog import RunInfo
from ops.backup.context import BackupContext
from ops.backup.drill import DRILLS, RECORD
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


def plan_prune(
    runs: list[RunInfo], now: datetime, keep_daily: timedelta, keep_weekly: timedelta, drills: Sequence[str] = ()
) -> PrunePlan:
    """Given the bucket's runs, the time, the windows and the names of the objects under drills/, return what to
    delete and keep, with reasons.

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
    _plan_drills(plan, drills, now, max(keep_daily, keep_weekly))
    return plan


def _plan_drills(plan: PrunePlan, names: Sequence[str], now: datetime, keep: timedelta) -> None:
    """Add the drill records to plan: past keep deleted, but the newest passed one; a name no record's kept."""
    records = []
    for name in names:
        if match := RECORD.match(name):
            records.append((datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC), match.group(2), name))
        else:
            plan.keep.append((f"{DRILLS}/{name}", "not a drill record's name: never deleted automatically"))
    newest_passed = max((r for r in records if r[1] == "passed"), default=None)
    for record in sorted(records):
        when, _, name = record
        if record == newest_passed:
            plan.keep.append((f"{DRILLS}/{name}", "the newest passed restore drill (the drill alert reads it)"))
        elif now - when > keep:
            plan.delete.append((f"{DRILLS}/{name}", f"drill record, older than {keep.days} days"))
        else:
            plan.keep.append((f"{DRILLS}/{name}", f"drill record, within {keep.days} days"))


def run_prune(ctx: BackupContext, dry_run: bool = False, now: datetime | None = None) -> PrunePlan:
    """Given the context, delete the runs retention no longer needs; return what was (or would be) deleted.

    Raise RetentionRefused (after notifying) instead of deleting the last good backups.
    """
    runs = catalog.runs(ctx)
    folder = ctx.object_name(DRILLS, "")
    records = {f"{DRILLS}/{o.name[len(folder) :]}": [o.name] for o in ctx.bucket.list(folder)}
    try:
        plan = plan_prune(
            runs,
            now or datetime.now(UTC),
            timedelta(days=ctx.keep_daily_days),
            timedelta(weeks=ctx.keep_weekly_weeks),
            [name.split("/", 1)[1] for name in records],
        )
    except RetentionRefused as exc:
        notify(NotifyConfig(ctx.ping_url), Notice("prune", False, str(exc)))
        raise
    plan.dry_run = dry_run
    for problem in plan.problems:
        log.warning("prune kept %s", problem)
    if not dry_run:
        objects = {r.run_id: r.objects for r in runs} | records
        for run_id, _ in plan.delete:
            # the manifest first: a half-deleted run is then incomplete, never a broken "complete" one
            for name in sorted(objects[run_id], key=lambda n: not n.endswith("/manifest.json")):
                ctx.bucket.delete(name)
                plan.deleted_objects += 1
    return plan
