"""What a journal row means: a killed operation reads interrupted, and only an `ok` apply or verify lets a dependent slice go."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest

from ops.journal import HEARTBEAT_SECONDS, Entry, LockHolder, effective_outcome, satisfies_prerequisite
from ops.output import status_text
from ops.slices.engine import SliceStatus, prerequisite_problem, status_hint

# above Linux's largest possible pid (PID_MAX_LIMIT, 2**22) and macOS's (99998): no process has it
DEAD_PID = 2**22 + 1
ROW = Entry(7, "2026-11-24 10:00:00+00", "alice", 1, "apply", "abc", "ok", "", 1200, "gcp-vm", 4242)  # not this host


def row(action: str = "apply", outcome: str = "ok", **changes: object) -> Entry:
    return replace(ROW, action=action, outcome=outcome, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("holder", "expected"),
    [
        (LockHolder("gcp-vm", 4242, 30), "running"),  # its own process holds the lock: still at work
        (None, "interrupted"),  # nobody holds it: killed (SIGKILL, reboot) without finishing the row
        (LockHolder("gcp-vm", 999), "interrupted"),  # another process holds it now
        (LockHolder("laptop", 4242), "interrupted"),  # the same pid on another host is another process
        (LockHolder("gcp-vm", 4242, 3 * HEARTBEAT_SECONDS + 1), "interrupted"),  # three heartbeats missed: dead or frozen
    ],
)
def test_a_running_row_is_running_only_while_its_process_holds_the_lock(holder: LockHolder | None, expected: str) -> None:
    assert effective_outcome(row(outcome="running"), holder) == expected


def test_a_running_row_whose_lock_holder_died_on_this_host_reads_interrupted() -> None:
    """SIGKILL or a crash leaves the lock row behind, with a fresh heartbeat: the pid tells."""
    pid, here = DEAD_PID, socket.gethostname()
    holder = LockHolder(here, pid, idle_seconds=5)
    assert effective_outcome(row(outcome="running", host=here, pid=pid), holder) == "interrupted"
    assert "no longer exists" in holder.gone()
    alive = LockHolder(here, 1, idle_seconds=5)  # pid 1 always exists
    assert effective_outcome(row(outcome="running", host=here, pid=1), alive) == "running"


@pytest.mark.parametrize(
    ("holder", "expected"),
    [
        (LockHolder("gcp-vm", 4242), "rolling-back"),
        (None, "rollback-failed"),
        (LockHolder("gcp-vm", 4242, 600), "rollback-failed"),
    ],
)
def test_a_rollback_killed_half_way_reads_rollback_failed(holder: LockHolder | None, expected: str) -> None:
    """Killed while restoring (SIGKILL, a reboot): the databases may be half-restored."""
    assert effective_outcome(row(outcome="rolling-back"), holder) == expected


def test_a_running_row_from_before_pids_were_journaled_reads_interrupted() -> None:
    assert effective_outcome(row(outcome="running", pid=None), LockHolder("gcp-vm", 4242)) == "interrupted"


@pytest.mark.parametrize("outcome", ["ok", "failed", "rolled-back", "rollback-failed", "interrupted"])
def test_a_finished_row_keeps_its_outcome(outcome: str) -> None:
    assert effective_outcome(row(outcome=outcome), None) == outcome


@pytest.mark.parametrize(
    ("entry", "satisfies"),
    [
        (row("apply", "ok"), True),
        (row("verify", "ok"), True),
        (row("apply", "failed"), False),
        (row("apply", "rolled-back"), False),
        (row("apply", "rollback-failed"), False),
        (row("apply", "interrupted"), False),
        (row("verify", "interrupted"), False),
        (row("apply", "running"), False),
        (row("apply", "rolling-back"), False),
        (row("rollback", "ok"), False),  # rolled back by hand: back to before its apply
        (None, False),
    ],
)
def test_only_an_ok_apply_or_verify_satisfies_a_prerequisite(entry: Entry | None, satisfies: bool) -> None:
    assert satisfies_prerequisite(entry) is satisfies


@pytest.mark.parametrize("action", ["apply", "rollback"])
def test_a_slice_whose_rollback_failed_cannot_be_applied_until_a_rollback_succeeds(action: str) -> None:
    """Its databases may be half-restored: an apply would snapshot that as the state to go back to."""
    assert prerequisite_problem(3, (), {3: row(action, "rollback-failed", slice=3)}) == (
        f"slice 3's last rollback did not finish (`{action} rollback-failed`), so its state is unknown: "
        "run `ops slice 3 --rollback` first; applying is refused until a rollback succeeds"
    )
    assert prerequisite_problem(3, (), {3: row("rollback", "ok", slice=3)}) is None
    assert prerequisite_problem(3, (), {3: row("apply", "rolled-back", slice=3)}) is None  # restored: apply again


def test_a_prerequisite_whose_latest_operation_failed_is_named_with_that_operation() -> None:
    states = {1: row("apply", "rollback-failed", slice=1)}
    assert prerequisite_problem(2, (1,), states) == (
        "slice 2 needs slice 1 applied and verified first, and its latest operation is `apply rollback-failed` (make slice-1)"
    )
    assert prerequisite_problem(2, (1,), {}) == "slice 2 needs slice 1 applied and verified first (make slice-1)"
    assert prerequisite_problem(2, (1,), {1: row("verify", "ok", slice=1)}) is None


def test_an_interrupted_prerequisite_blocks_even_after_an_earlier_ok() -> None:
    # slice_states() gives the latest operation: the earlier "apply ok" no longer counts
    states = {1: row("apply", "interrupted", slice=1), 4: row("apply", "ok", slice=4)}
    assert prerequisite_problem(5, (4,), states) is None
    assert "`apply interrupted`" in (prerequisite_problem(2, (1,), states) or "")


@pytest.mark.parametrize(
    ("entry", "hint"),
    [
        (row("apply", "interrupted"), "it was killed: run `make slice-3` again or `ops slice 3 --rollback`"),
        (row("verify", "interrupted"), "it was killed: run `ops slice 3 --verify` again or `ops slice 3 --rollback`"),
        (row("rollback", "interrupted"), "it was killed: run `ops slice 3 --rollback` again"),
        (
            row("apply", "rollback-failed"),
            "its state is unknown: fix the cause in the detail, then run `ops slice 3 --rollback` "
            "(applying is refused until then)",
        ),
        (row("apply", "running"), "running now (pid 4242 on gcp-vm)"),
        (row("apply", "rolling-back"), "rolling back now (pid 4242 on gcp-vm)"),
        (row("apply", "ok"), ""),
    ],
)
def test_status_says_what_to_do_next(entry: Entry, hint: str) -> None:
    assert status_hint(3, entry) == hint


def test_status_text_shows_the_hint_and_the_detail_under_a_slice_that_needs_the_operator() -> None:
    rows = [
        SliceStatus(1, "Gateway", "apply ok", "2026-11-24").to_dict(),
        SliceStatus(2, "Tracing", "apply interrupted", "2026-11-24", "interrupted by SIGHUP during verify", "run it").to_dict(),
    ]
    lines = status_text(rows).splitlines()
    assert lines[0].split() == ["1", "Gateway", "apply", "ok", "2026-11-24"]
    assert lines[1].split()[:4] == ["2", "Tracing", "apply", "interrupted"]
    assert lines[2:] == ["    run it", "    interrupted by SIGHUP during verify"]
