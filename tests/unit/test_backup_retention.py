"""Retention by dates: what prune deletes and keeps, and the guards that keep the last good backups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ops.backup.catalog import RunInfo
from ops.backup.manifest import new_run_id
from ops.backup.retention import RetentionRefused, plan_prune

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
DAILY, WEEKLY = timedelta(days=30), timedelta(weeks=4)


def run(days_ago: float, schedule: str = "daily", complete: bool = True) -> RunInfo:
    return RunInfo(new_run_id(schedule, NOW - timedelta(days=days_ago)), complete, problem="" if complete else "no manifest")


def deleted(runs: list[RunInfo]) -> list[str]:
    return sorted(r for r, _ in plan_prune(runs, NOW, DAILY, WEEKLY).delete)


def test_dailies_past_30_days_and_weeklies_past_4_weeks_go() -> None:
    dailies = [run(d) for d in range(0, 40)]
    weeklies = [run(d, "weekly") for d in (1, 8, 15, 22, 29, 36)]
    gone = deleted(dailies + weeklies)
    assert gone == sorted([r.run_id for r in dailies[31:]] + [weeklies[4].run_id, weeklies[5].run_id])


def test_the_newest_good_backup_is_kept_even_when_old_runs_are_incomplete() -> None:
    runs = [run(29), run(2, complete=False), run(0.5, complete=False)]
    plan = plan_prune(runs, NOW, timedelta(days=30), WEEKLY)
    assert [r for r, _ in plan.delete] == [runs[1].run_id]  # incomplete and older than a day
    assert (runs[0].run_id, "newest complete daily backup") in plan.keep


def test_prune_refuses_when_backups_have_stopped() -> None:
    runs = [run(d) for d in (45, 40, 35)]
    with pytest.raises(RetentionRefused, match=r"newest daily backup .* is 35 days old"):
        plan_prune(runs, NOW, DAILY, WEEKLY)


def test_the_last_complete_backup_of_a_kind_is_never_deleted() -> None:
    # manual runs have no stopped-backups guard, yet the newest one stays whatever its age
    runs = [run(50, "manual"), run(40, "manual")]
    assert deleted(runs) == [runs[0].run_id]
    assert deleted([run(400, "manual")]) == []


def test_recent_incomplete_runs_may_still_be_uploading() -> None:
    runs = [run(0), run(0.2, complete=False)]
    assert deleted(runs) == []
