"""The slice engine's decisions without Docker: which snapshot a rollback uses, which are pruned, how they are written,
and how SIGTERM/SIGHUP become an exception that lets cleanup run."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ops.config import Settings, load_settings
from ops.errors import OpsError
from ops.interrupts import Interrupted, shielded, signals_as_exceptions
from ops.journal import Psql
from ops.output import slice_result_text
from ops.runtime.compose import Compose
from ops.secrets import init_secrets
from ops.slices import engine
from ops.slices.base import Target
from ops.slices.engine import (
    Plan,
    SnapshotInfo,
    latest_snapshot,
    list_snapshots,
    pick_rollback_snapshot,
    prune_snapshots,
    snapshots_to_prune,
)


@pytest.fixture
def settings(project: Path) -> Settings:
    settings = load_settings(project)
    init_secrets(settings.env_example, settings.env_file)
    return load_settings(project)


def make_snapshot(settings: Settings, name: str, *, state: bool = True, dump: bool = True) -> Path:
    """A snapshot directory as take_snapshot leaves it; state=False or dump=False: as a failed dump left it before."""
    directory = settings.snapshots_dir / name
    (directory / "files").mkdir(parents=True)
    (directory / "files" / "litellm-config.yaml").write_text("model_list: []\n")
    (directory / "databases").mkdir()
    if dump:
        (directory / "databases" / "litellm.dump").write_bytes(b"PGDMP")
    if state:
        body = {"files": {"litellm-config.yaml": True}, "databases": {"litellm": True}, "containers": {"litellm": "c1"}}
        (directory / "state.json").write_text(json.dumps(body))
    return directory


def info(name: str, complete: bool = True, action: str = "apply") -> SnapshotInfo:
    return SnapshotInfo(name, 1, action, complete)


def test_rollback_skips_half_written_snapshots_for_the_newest_complete_one(settings: Settings) -> None:
    make_snapshot(settings, "20261120T100000000000Z-slice01-apply")
    make_snapshot(settings, "20261121T100000000000Z-slice01-apply", dump=False)  # its pg_dump failed
    make_snapshot(settings, "20261122T100000000000Z-slice01-apply", state=False)  # killed before state.json
    make_snapshot(settings, "20261123T100000000000Z-slice01-apply.partial")  # being written, or killed
    make_snapshot(settings, "20261124T100000000000Z-slice01-before-rollback")  # not an apply's
    make_snapshot(settings, "20261124T100000000000Z-slice02-apply")  # another slice's
    assert latest_snapshot(settings, 1).name == "20261120T100000000000Z-slice01-apply"


def test_rollback_without_a_complete_snapshot_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(OpsError, match="slice 1 has no snapshot to roll back to"):
        latest_snapshot(settings, 1)
    make_snapshot(settings, "20261121T100000000000Z-slice01-apply", dump=False)
    with pytest.raises(
        OpsError,
        match=r"slice 1 has no complete snapshot to roll back to: 1 incomplete one\(s\) skipped .* "
        r"the newest 20261121T100000000000Z-slice01-apply$",
    ):
        latest_snapshot(settings, 1)


def test_pick_rollback_snapshot_ignores_other_kinds() -> None:
    snapshots = [info("a-apply"), info("b", action="before-rollback"), info("c", action="apply-restored")]
    assert pick_rollback_snapshot(1, snapshots) == "a-apply"


def test_prune_keeps_the_newest_complete_ones_and_the_one_the_verified_state_needs() -> None:
    names = [f"2026112{i}T000000000000Z-slice01-apply" for i in range(8)]
    snapshots = [info(n) for n in names[:7]] + [SnapshotInfo(names[7] + ".partial", 1, "apply", False, "partial")]
    damaged = SnapshotInfo("20261123T500000000000Z-slice01-apply", 1, "apply", False, "missing databases/litellm.dump")
    snapshots.insert(3, damaged)
    pruning = snapshots_to_prune(snapshots, keep=3, needed=frozenset([names[1]]))
    assert pruning.delete == [names[0], names[2], names[3], names[7] + ".partial"]
    assert pruning.notes == [
        "kept 20261123T500000000000Z-slice01-apply, which no rollback can use (missing databases/litellm.dump): delete it by hand"
    ]
    assert snapshots_to_prune(snapshots, keep=0).delete == [s.name for s in snapshots if s is not damaged]
    assert snapshots_to_prune(snapshots, keep=20).delete == [names[7] + ".partial"]


NOW = datetime(2026, 12, 31, tzinfo=UTC)


def test_what_a_rollback_replaced_is_kept_30_days_however_many_applies_follow() -> None:
    """The before-rollback snapshot is the only copy of what --rollback threw away (an operator's edit, a database)."""
    saved = [info("20261210T000000000000Z-slice01-before-rollback", action="before-rollback")]
    old = [info("20261125T000000000000Z-slice01-before-rollback", action="before-rollback")]
    applies = [info(f"202612{day}T000000000000Z-slice01-apply") for day in range(10, 16)]
    pruning = snapshots_to_prune(old + saved + applies, keep=5, now=NOW)
    assert pruning.delete == [old[0].name, applies[0].name]  # the 36-day-old one and the surplus apply
    assert pruning.notes == [f"deleted {old[0].name}: what a rollback replaced is kept 30 days"]


def test_a_snapshot_ops_cannot_read_is_kept_with_a_warning_and_only_partial_ones_are_deleted(settings: Settings) -> None:
    make_snapshot(settings, "20261110T100000000000Z-slice01-apply")
    newer = make_snapshot(settings, "20261111T100000000000Z-slice01-apply")
    (newer / "state.json").write_text(json.dumps({"version": 2, "parts": ["files", "databases"]}))  # a newer ops's shape
    broken = make_snapshot(settings, "20261112T100000000000Z-slice01-apply")
    (broken / "state.json").write_text("{not json")
    make_snapshot(settings, "20261113T100000000000Z-slice01-apply.partial")
    pruning = prune_snapshots(settings, 1, keep=1, now=NOW)
    assert pruning.delete == ["20261113T100000000000Z-slice01-apply.partial"]
    assert pruning.notes == [
        "kept 20261111T100000000000Z-slice01-apply, which no rollback can use (state.json has a shape this ops "
        "does not know (a newer ops wrote it?)): delete it by hand",
        "kept 20261112T100000000000Z-slice01-apply, which no rollback can use (state.json does not parse): delete it by hand",
    ]
    assert [s.name for s in list_snapshots(settings, 1)] == [f"2026111{d}T100000000000Z-slice01-apply" for d in range(3)]
    assert latest_snapshot(settings, 1).name == "20261110T100000000000Z-slice01-apply"


def test_prune_on_disk_keeps_what_the_last_verified_apply_came_from(settings: Settings) -> None:
    for day in range(10, 18):
        make_snapshot(settings, f"202611{day}T100000000000Z-slice01-apply")
    make_snapshot(settings, "20261118T100000000000Z-slice01-apply.partial")
    make_snapshot(settings, "20261118T100000000000Z-slice02-apply")
    applied = settings.project_dir / ".ops" / "applied" / "slice01"
    applied.mkdir(parents=True)
    (applied / "state.json").write_text(json.dumps({"files": {}, "snapshot": "20261111T100000000000Z-slice01-apply"}))
    removed = prune_snapshots(settings, 1, keep=5, now=NOW).delete
    assert removed == [
        "20261110T100000000000Z-slice01-apply",
        "20261112T100000000000Z-slice01-apply",
        "20261118T100000000000Z-slice01-apply.partial",
    ]
    left = [s.name for s in list_snapshots(settings, 1)]
    assert left == ["20261111T100000000000Z-slice01-apply"] + [f"202611{d}T100000000000Z-slice01-apply" for d in range(13, 18)]
    assert (settings.snapshots_dir / "20261118T100000000000Z-slice02-apply").is_dir()  # another slice's


def runtime_without_services(settings: Settings) -> engine.Runtime:
    """A runtime for a plan with files only: neither compose nor psql is called."""
    target = Target("http://127.0.0.1:9", "sk-x", "http://127.0.0.1:9", "pk", "sk")
    return engine.Runtime(settings, Compose.for_settings(settings), Psql(("psql",)), target)


def test_snapshots_are_private_and_restore_each_files_own_mode(settings: Settings) -> None:
    (settings.project_dir / "litellm-config.yaml").chmod(0o644)
    settings.env_file.chmod(0o600)
    plan = Plan(1, "t", (), (), ("litellm-config.yaml", "vps.env"), ())
    snapshot = engine.take_snapshot(runtime_without_services(settings), plan, "apply")
    assert snapshot.name.endswith("-slice01-apply") and engine.snapshot_complete(snapshot)
    assert not list(settings.snapshots_dir.glob("*.partial"))
    for directory in (settings.snapshots_dir, snapshot, snapshot / "files"):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    for file in (snapshot / "state.json", snapshot / "files" / "vps.env", snapshot / "files" / "litellm-config.yaml"):
        assert file.stat().st_mode & 0o777 == 0o600, file
    assert json.loads((snapshot / "state.json").read_text())["modes"] == {"litellm-config.yaml": 0o644, "vps.env": 0o600}


Signal = Callable[[], None]


def send(signum: int) -> Signal:
    return lambda: os.kill(os.getpid(), signum)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_become_an_exception_that_runs_finally_blocks(signum: int) -> None:
    before = signal.getsignal(signum)
    cleaned = []
    with pytest.raises(Interrupted) as caught, signals_as_exceptions():
        try:
            send(signum)()
            signal.pause()  # not reached: the handler raised at the kill
        finally:
            cleaned.append(True)
    assert cleaned == [True]
    assert caught.value.exit_code == 128 + signum and signal.Signals(signum).name in str(caught.value)
    assert signal.getsignal(signum) is before  # the previous handler is back


def test_a_signal_during_shielded_cleanup_waits_for_it_to_finish() -> None:
    steps = []
    with pytest.raises(Interrupted), signals_as_exceptions(), shielded():
        send(signal.SIGTERM)()
        steps.append("restored the key")  # still runs: the signal is held back
    assert steps == ["restored the key"]


def test_after_the_first_signal_the_next_ones_do_not_interrupt_the_cleanup() -> None:
    steps = []
    with pytest.raises(Interrupted), signals_as_exceptions():
        try:
            send(signal.SIGTERM)()
        finally:
            send(signal.SIGHUP)()  # a dropped session after a kill: cleanup goes on
            steps.append("lock released")
    assert steps == ["lock released"]


def test_sighup_ignored_by_nohup_stays_ignored() -> None:
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with signals_as_exceptions():
            send(signal.SIGHUP)()
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_the_output_says_how_long_what_a_rollback_replaced_is_kept_and_what_pruning_did() -> None:
    rollback = engine.RollbackReport(1, "a-slice01-apply", "b-slice01-before-rollback", ["restored database litellm"])
    assert "  current state saved to b-slice01-before-rollback (kept 30 days)" in slice_result_text(rollback.to_dict())
    note = "deleted c-slice01-before-rollback: what a rollback replaced is kept 30 days"
    report = engine.ApplyReport(1, "rolled-back", ["litellm"], [], "a-slice01-apply-rolled-back", rollback, notes=[note])
    lines = slice_result_text(report.to_dict()).splitlines()
    assert "  what it replaced is saved in b-slice01-before-rollback (kept 30 days)" in lines
    assert f"  note: {note}" in lines


def test_the_rollback_prompt_names_the_databases_it_replaces_and_the_snapshot(settings: Settings) -> None:
    make_snapshot(settings, "20261120T100000000000Z-slice01-apply")
    warning = engine.rollback_warning(settings, 1)
    assert warning.startswith("rollback slice 1 to 20261120T100000000000Z-slice01-apply? ")
    assert "restores the database(s) litellm as they were then: everything written to them since is replaced" in warning
    assert "before-rollback snapshot for 30 days" in warning
    with pytest.raises(OpsError, match="slice 2"):
        engine.rollback_warning(settings, 2)  # no snapshot: the same clear error as the rollback itself
