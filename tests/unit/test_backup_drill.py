"""ops.backup.drill: the comparison a restore drill stands on, and when a drill passes.

Fingerprints are {table: [row count, checksum]}, taken at backup time from the
dump's own snapshot and again from the restored scratch database. The drill on
a real Postgres is in tests/integration/test_backup.py.
"""

from __future__ import annotations

import pytest

from ops.backup.drill import DrillReport, TableCheck, compare

USERS = ["3", "9f2c"]
ORDERS = ["120", "77ab"]

# case -> (expected, restored, [(table, ok, expected as reported, restored as reported)])
COMPARISONS: dict[str, tuple[dict[str, list[str]], dict[str, list[str]], list[tuple[str, bool, list[str], list[str] | None]]]] = {
    "identical": (
        {"public.users": USERS, "public.orders": ORDERS},
        {"public.orders": ORDERS, "public.users": USERS},
        [("public.orders", True, ORDERS, ORDERS), ("public.users", True, USERS, USERS)],
    ),
    "a row missing": (
        {"public.users": USERS},
        {"public.users": ["2", "9f2c"]},
        [("public.users", False, USERS, ["2", "9f2c"])],
    ),
    "same count, other rows": (
        {"public.users": USERS},
        {"public.users": ["3", "0000"]},
        [("public.users", False, USERS, ["3", "0000"])],
    ),
    "a table not restored": (
        {"public.users": USERS, "public.orders": ORDERS},
        {"public.users": USERS},
        [("public.orders", False, ORDERS, None), ("public.users", True, USERS, USERS)],
    ),
    "a table the backup did not have": (
        {"public.users": USERS},
        {"public.users": USERS, "public.extra": ["0", ""]},
        [("public.extra", False, [], ["0", ""]), ("public.users", True, USERS, USERS)],
    ),
    "an empty table on both sides": (
        {"public.empty": ["0", ""]},
        {"public.empty": ["0", ""]},
        [("public.empty", True, ["0", ""], ["0", ""])],
    ),
    "nothing on either side": ({}, {}, []),
    "nothing restored": (
        {"public.users": USERS},
        {},
        [("public.users", False, USERS, None)],
    ),
}


@pytest.mark.parametrize("case", sorted(COMPARISONS))
def test_each_table_of_either_side_is_compared_by_count_and_checksum(case: str) -> None:
    expected, restored, checks = COMPARISONS[case]
    assert compare("litellm", expected, restored) == [
        TableCheck("litellm", table, ok, want, got) for table, ok, want, got in checks
    ]


def check(ok: bool) -> TableCheck:
    return TableCheck("litellm", "public.users", ok, USERS, USERS if ok else None)


@pytest.mark.parametrize(
    ("objects_ok", "databases", "tables", "problems", "ok"),
    [
        (True, 2, [check(True), check(True)], [], True),
        (False, 2, [check(True)], [], False),  # an object failed its checksum or decode
        (True, 0, [], [], False),  # nothing restored proves nothing
        (True, 1, [check(True), check(False)], [], False),  # one table differs
        (True, 1, [check(True)], ["database n8n: pg_restore exited with status 1"], False),  # one database not restored
        (True, 1, [], [], True),  # a database without tables, restored
    ],
    ids=["all identical", "an object bad", "no database", "a table differs", "a database failed", "empty database"],
)
def test_a_drill_passes_only_when_everything_was_restored_and_identical(
    objects_ok: bool, databases: int, tables: list[TableCheck], problems: list[str], ok: bool
) -> None:
    report = DrillReport("20261124T030000Z", tables, objects_ok, databases, problems)
    assert report.ok is ok
    assert report.to_dict()["ok"] is ok


def test_the_report_says_which_table_differs_and_how() -> None:
    report = DrillReport("20261124T030000Z", compare("litellm", {"public.users": USERS}, {"public.users": ["2", "1a"]}), True, 1)
    assert report.to_dict() == {
        "id": "20261124T030000Z",
        "ok": False,
        "objects_ok": True,
        "databases": 1,
        "tables": [{"database": "litellm", "table": "public.users", "ok": False, "expected": USERS, "restored": ["2", "1a"]}],
        "problems": [],
    }
