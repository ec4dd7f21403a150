"""When a change that failed to apply is tried again, and what counts against it (issue #10, items 8 and 13)."""

from __future__ import annotations

import errno
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ops.errors import ConfigError, OpsError
from ops.events.changes import MAX_ATTEMPTS, after_failure, delay, due
from ops.events.reconciler import NoSpace, RepoLocked, deferral
from ops.events.sharing import check_group

T0 = datetime(2026, 11, 24, 3, 0, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="seconds")


def test_tries_are_spaced_from_ten_seconds_doubling_to_five_minutes() -> None:
    assert [delay(n).total_seconds() for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]


def test_a_counted_failure_waits_before_the_next_try_and_fails_the_change_at_the_limit() -> None:
    first = after_failure(0, 0, transient=False, at=T0)
    assert (first.status, first.attempts, first.next_attempt_at) == ("approved", 1, at(10))
    second = after_failure(1, 0, transient=False, at=T0)
    assert (second.status, second.attempts, second.next_attempt_at) == ("approved", 2, at(20))
    last = after_failure(MAX_ATTEMPTS - 1, 0, transient=False, at=T0)
    assert (last.status, last.attempts, last.next_attempt_at) == ("failed", MAX_ATTEMPTS, "")
    # a permanent error takes minutes to fail, not the seconds three polls in a row took
    waited = sum(delay(n).total_seconds() for n in range(1, MAX_ATTEMPTS))
    assert waited >= 300


def test_a_transient_failure_is_not_counted_and_backs_off_on_its_own_count() -> None:
    waiting = after_failure(2, 0, transient=True, at=T0)
    assert (waiting.status, waiting.attempts, waiting.deferrals, waiting.next_attempt_at) == ("approved", 2, 1, at(10))
    for deferrals in range(50):  # a lock held for hours never fails the change
        waiting = after_failure(MAX_ATTEMPTS - 1, deferrals, transient=True, at=T0)
        assert waiting.status == "approved" and waiting.attempts == MAX_ATTEMPTS - 1
    assert waiting.next_attempt_at == at(300)
    counted = after_failure(2, 7, transient=False, at=T0)  # the change's own failure again: its own spacing
    assert (counted.attempts, counted.deferrals, counted.next_attempt_at) == (3, 0, at(40))


def test_a_change_is_due_at_its_next_attempt_time_not_before() -> None:
    assert due("", T0)
    assert not due(at(10), T0 + timedelta(seconds=9))
    assert due(at(10), T0 + timedelta(seconds=10))
    assert due("not a time", T0)  # an unreadable time never parks a change forever


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (RepoLocked("held", Path("/t/.git/index.lock")), True),
        (NoSpace("full"), True),
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (FileExistsError(errno.EEXIST, "File exists"), False),
        (OpsError("cannot write tasks/x.md/y.md: tasks/x.md is a file, not a directory"), False),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), False),
    ],
    ids=["lock", "no-space", "enospc", "path-conflict", "file-not-dir", "bug"],
)
def test_only_what_is_not_the_changes_fault_is_transient(error: BaseException, transient: bool) -> None:
    assert (deferral(error) is not None) is transient


@pytest.mark.parametrize("value", ["root", "0", " root ", "Ops Team", "a;b", ""])
def test_the_operators_group_is_never_root_nor_malformed(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^OPS_EVENTS_GROUP"):
        check_group(value)


def test_a_dedicated_group_by_name_or_number_is_accepted() -> None:
    assert check_group("aistack") == "aistack"
    assert check_group("1001") == "1001"
