"""Retention by dates, one table of cases: what prune deletes and keeps, and the guards that keep the last good backups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from ops.backup.catalog import RunInfo
from ops.backup.manifest import MANIFEST, Entry, Manifest, new_run_id
from ops.backup.retention import RetentionRefused, plan_prune

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
DAILY, WEEKLY = timedelta(days=30), timedelta(weeks=4)
ALL_DAILY = ("postgres", "qdrant", "git")


@dataclass(frozen=True)
class R:
    """One run in a case: its label, age, kind, the sources it took, and how it ended."""

    label: str
    days_ago: float
    kind: str = "daily"
    sources: tuple[str, ...] = ALL_DAILY
    failed: tuple[str, ...] = ()
    state: str = "manifest"  # manifest | incomplete (objects, no manifest) | unreadable (a manifest we cannot parse)


def build(spec: R) -> RunInfo:
    run_id = new_run_id(spec.kind, NOW - timedelta(days=spec.days_ago))
    objects = [f"b/{run_id}/{s}/{s}.zst" for s in spec.sources if s not in spec.failed]
    if spec.state == "incomplete":
        return RunInfo(run_id, False, objects, problem="no manifest: the run did not finish")
    if spec.state == "unreadable":
        problem = f"b/{run_id}/{MANIFEST} is not a valid backup manifest: format 3 is not one this ops reads"
        return RunInfo(run_id, False, [*objects, f"b/{run_id}/{MANIFEST}"], problem=problem, unreadable=True)
    entries = [Entry(s, f"{s}.x", f"b/{run_id}/{s}/{s}.zst", 10, "0" * 64, 1.0) for s in spec.sources if s not in spec.failed]
    manifest = Manifest(run_id, spec.kind, "", entries=entries, sources=list(spec.sources))
    manifest.failed = {s: "it failed" for s in spec.failed}
    return RunInfo(run_id, True, [*objects, f"b/{run_id}/{MANIFEST}"], manifest=manifest)


def dailies(first: int, last: int, **kw: object) -> list[R]:
    return [R(f"d{d}", d, **kw) for d in range(first, last + 1)]  # type: ignore[arg-type]


CASES: list[tuple[str, list[R], set[str] | str]] = [
    # (case, runs, labels deleted -- or the start of the refusal)
    ("daily: past 30 days go", dailies(0, 39), {f"d{d}" for d in range(31, 40)}),
    (
        "weekly: past 4 weeks go, dailies apart",
        [R("d0", 0), *[R(f"w{d}", d, "weekly", ("volumes",)) for d in (1, 8, 15, 22, 29, 36)]],
        {"w29", "w36"},
    ),
    (
        "manual: a recent git-only run hides no stopped dailies",
        [R("d45", 45), R("d40", 40), R("d35", 35), R("m1", 1, "manual", ("git",))],
        "prune deleted nothing: the newest daily backup",
    ),
    ("manual: the newest of its kind stays at any age", [R("m50", 50, "manual"), R("m40", 40, "manual")], {"m50"}),
    ("manual: only manual runs, no stopped guard", [R("m400", 400, "manual")], set()),
    (
        "pre-restore: a Qdrant-only safety backup hides no stopped dailies",
        [R("d35", 35), R("p2", 2, "pre-restore", ("qdrant",))],
        "prune deleted nothing: the newest daily backup",
    ),
    (
        "pre-restore: kept 30 days like a daily, the newest always",
        [R("p40", 40, "pre-restore", ("postgres",)), R("p10", 10, "pre-restore", ("postgres",)), R("d0", 0)],
        {"p40"},
    ),
    (
        "pre-restore: the newest run holding a source is kept past retention",
        [R("p60", 60, "pre-restore", ("postgres",)), R("p50", 50, "pre-restore", ("qdrant",)), *dailies(0, 3, sources=("git",))],
        set(),
    ),
    (
        "partial: postgres failing for weeks keeps the last good dump",
        [R("d33", 33), R("d32", 32), *dailies(0, 31, failed=("postgres",))],
        {"d33", "d31"},
    ),
    (
        "each source: the only volumes archive stays",
        [R("m60", 60, "manual", ("volumes",)), *dailies(0, 29)],
        set(),
    ),
    (
        "incomplete: objects without a manifest go after a day",
        [R("d0", 0), R("i2", 2, state="incomplete"), R("i0", 0.2, state="incomplete")],
        {"i2"},
    ),
    (
        "incomplete: never keeps stopped backups from being noticed",
        [R("d35", 35), R("i0", 0.1, state="incomplete")],
        "prune deleted nothing: the newest daily backup",
    ),
    (
        "unreadable: a manifest we cannot parse is never deleted",
        [R("u60", 60, state="unreadable"), R("u2", 2.5, state="unreadable"), *dailies(0, 3)],
        set(),
    ),
]


@pytest.mark.parametrize(("case", "specs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_retention(case: str, specs: list[R], expected: set[str] | str) -> None:
    runs = [build(s) for s in specs]
    label = {r.run_id: s.label for r, s in zip(runs, specs, strict=True)}
    if isinstance(expected, str):
        with pytest.raises(RetentionRefused, match=expected):
            plan_prune(runs, NOW, DAILY, WEEKLY)
        return
    plan = plan_prune(runs, NOW, DAILY, WEEKLY)
    assert {label[r] for r, _ in plan.delete} == expected
    assert sorted(label[r] for r, _ in plan.delete + plan.keep) == sorted(s.label for s in specs)  # each run decided once


def test_why_a_run_is_kept_is_said() -> None:
    runs = [build(s) for s in (R("d33", 33), *dailies(0, 31, failed=("postgres",)), R("u60", 60, state="unreadable"))]
    plan = plan_prune(runs, NOW, DAILY, WEEKLY)
    kept = dict(plan.keep)
    assert kept[runs[0].run_id] == "newest complete backup of postgres"
    assert kept[runs[-1].run_id].startswith("manifest unreadable, never deleted automatically")
    assert len(plan.problems) == 1 and "delete it by hand" in plan.problems[0]


def test_the_stopped_guard_names_the_kind_and_age() -> None:
    runs = [build(R("w40", 40, "weekly", ("volumes",))), build(R("d0", 0))]
    with pytest.raises(RetentionRefused, match=r"newest weekly backup .* is 40 days old, past its 28-day retention"):
        plan_prune(runs, NOW, DAILY, WEEKLY)
