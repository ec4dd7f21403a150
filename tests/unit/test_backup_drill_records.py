"""Retention of the drill records (``<prefix>/drills/``): one table of cases for the pure planner. Records past the
longer retention window go, the newest passed one never does (the drill alert reads it), a name that is no record's
stays, and the runs are decided as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ops.backup.catalog import RunInfo
from ops.backup.manifest import Entry, Manifest, new_run_id
from ops.backup.retention import RetentionRefused, plan_prune

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
DAILY, WEEKLY, WEEK = timedelta(days=30), timedelta(weeks=4), timedelta(days=7)
F = "failed"


def record(days_ago: float, outcome: str = "passed") -> str:
    when = NOW - timedelta(days=days_ago)
    return f"{when:%Y%m%dT%H%M%SZ}-{outcome}-{new_run_id('daily', when - timedelta(hours=3))}.json"


def daily(days_ago: float) -> RunInfo:
    run_id = new_run_id("daily", NOW - timedelta(days=days_ago))
    entries = [Entry("postgres", "n8n.dump", f"b/{run_id}/postgres/n8n.dump.zst", 10, "0" * 64, 1.0)]
    manifest = Manifest(run_id, "daily", "", entries=entries, sources=["postgres"])
    return RunInfo(run_id, True, [e.object for e in entries], manifest=manifest)


CASES: list[tuple[str, list[str], timedelta, set[str]]] = [
    # (case, records (file names), the daily window, the records deleted)
    ("no records", [], DAILY, set()),
    ("recent records stay, passed or failed", [record(1), record(8, "failed"), record(29)], DAILY, set()),
    ("past 30 days go", [record(31), record(45, "failed"), record(2)], DAILY, {record(31), record(45, "failed")}),
    (
        "the newest passed one stays at any age, a newer failed one does not",
        [record(90), record(60), record(40, "failed")],
        DAILY,
        {record(90), record(40, "failed")},
    ),
    ("only failed ones: all past the window go", [record(50, F), record(40, F)], DAILY, {record(50, F), record(40, F)}),
    ("a name that is no record's stays", ["notes.txt", "2026-11-01-passed.json", record(60), record(1)], DAILY, {record(60)}),
    ("the longer window: weekly's 4 weeks over daily's 7 days", [record(20), record(35), record(1)], WEEK, {record(35)}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "records", "keep_daily", "deleted"), CASES, ids=[c[0] for c in CASES])
def test_drill_records_past_retention_go_but_the_newest_passed_one(
    case: str, records: list[str], keep_daily: timedelta, deleted: set[str]
) -> None:
    runs = [daily(1), daily(40)]
    plan = plan_prune(runs, NOW, keep_daily, WEEKLY, records)
    assert {r for r, _ in plan.delete if r.startswith("drills/")} == {f"drills/{name}" for name in deleted}
    kept = {r for r, _ in plan.keep if r.startswith("drills/")}
    assert kept == {f"drills/{name}" for name in records} - {f"drills/{name}" for name in deleted}  # each decided once
    assert plan_prune(runs, NOW, keep_daily, WEEKLY).delete == [r for r in plan.delete if not r[0].startswith("drills/")]


def test_the_newest_passed_record_is_named_as_the_drill_alerts_and_nothing_goes_when_backups_stopped() -> None:
    plan = plan_prune([daily(1)], NOW, DAILY, WEEKLY, [record(40), record(50)])
    assert (f"drills/{record(40)}", "the newest passed restore drill (the drill alert reads it)") in plan.keep
    with pytest.raises(RetentionRefused, match="backups have stopped"):
        plan_prune([daily(45)], NOW, DAILY, WEEKLY, [record(60, "failed")])
