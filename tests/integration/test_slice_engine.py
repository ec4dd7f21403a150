"""The slice engine's apply, rollback and journal on a real Postgres, with real pg_dump and pg_restore.

The slice (tests/integration/slice_harness.py) has one file and one database and no
services, so no Docker is needed: what is under test is the engine's order of steps,
its snapshots, its journal rows and its handling of signals during a rollback.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from ops.config import load_settings
from ops.errors import OpsError
from ops.journal import Journal, lock_holder
from ops.local.processes import PostgresServer, wait_until
from ops.secrets import init_secrets
from ops.slices import engine
from tests.conftest import REPO, require
from tests.integration.slice_harness import GATE_OPEN, GATE_STARTED, Bench, make_bin_dir, make_slice, runtime

pytestmark = pytest.mark.integration


def new_project(project: Path) -> Path:
    settings = load_settings(project)
    init_secrets(settings.env_example, settings.env_file)
    return project


@pytest.fixture
def bench(postgres: PostgresServer, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bench]:
    """The slice under test in a project copy, with its database and the journal's on the session's Postgres."""
    database, journal = f"slice_{uuid.uuid4().hex[:8]}", f"journal_{uuid.uuid4().hex[:8]}"
    bench = Bench(
        str(new_project(project)),
        postgres.dsn(),
        postgres.dsn(journal),
        database,
        str(make_bin_dir(tmp_path / "bin", gate=tmp_path / "gate")),
    )
    (tmp_path / "gate").mkdir()
    (tmp_path / "gate" / GATE_OPEN).touch()  # open unless a test closes it
    admin = bench.psql(postgres.dsn())
    admin.query(f'CREATE DATABASE "{database}";')
    admin.query(f'CREATE DATABASE "{journal}";')
    module = make_slice(bench)
    monkeypatch.setattr(engine, "get_slice", lambda number: module)
    yield bench
    admin.query(f'DROP DATABASE "{database}" WITH (FORCE);')
    admin.query(f'DROP DATABASE "{journal}" WITH (FORCE);')


def state(bench: Bench) -> str:
    entry = Journal(bench.psql(bench.journal_url)).slice_states().get(1)
    return f"{entry.action} {entry.outcome}" if entry else "never run"


def apply_good(bench: Bench, text: str) -> None:
    bench.write(text)
    report = engine.run_apply(runtime(bench), 1)
    assert report.outcome == "ok", report.to_dict()
    assert bench.installed.read_text().strip() == text


def test_a_rollback_after_a_failed_apply_goes_back_past_the_last_verified_apply(bench: Bench) -> None:
    apply_good(bench, "good v1")
    bench.set_value("data 1")  # what the service's users wrote meanwhile
    apply_good(bench, "good v2")
    bench.set_value("data 2")
    killed = bench.settings.snapshots_dir / "20261101T000000000000Z-slice01-apply.partial"
    killed.mkdir()  # an apply killed while writing its snapshot

    bench.write("bad v3")
    failed = engine.run_apply(runtime(bench), 1)
    assert failed.outcome == "rolled-back" and failed.snapshot.endswith("-apply-rolled-back"), failed.to_dict()
    assert (bench.read(), bench.value()) == ("good v2", "data 2")  # the last verified files, the data as it was
    assert not killed.exists()  # pruned after a failed apply too

    # by hand: back to before the last verified apply, not to the state the automatic rollback already restored
    rolled = engine.run_rollback(runtime(bench), 1)
    assert rolled.snapshot.endswith("-slice01-apply") and (bench.read(), bench.value()) == ("good v2", "data 1")
    assert state(bench) == "rollback ok"


def test_a_failed_apply_after_rollbacks_by_hand_restores_the_files_the_stack_ran(bench: Bench) -> None:
    apply_good(bench, "good v1")
    apply_good(bench, "good v2")
    engine.run_rollback(runtime(bench), 1)  # to the snapshot of the v2 apply (taken after the edit: v2)
    engine.run_rollback(runtime(bench), 1)  # to the snapshot of the v1 apply: v1
    assert bench.read() == bench.installed.read_text().strip() == "good v1"

    bench.write("bad v3")
    failed = engine.run_apply(runtime(bench), 1)
    assert failed.outcome == "rolled-back", failed.to_dict()
    assert bench.read() == "good v1"  # what the stack ran before this apply, not v2 that was rolled back away from


def test_before_rollback_snapshots_survive_later_applies(bench: Bench) -> None:
    apply_good(bench, "good v1")
    bench.set_value("data the next rollback throws away")
    saved = engine.run_rollback(runtime(bench), 1).saved_to  # the only copy of that data
    for n in range(2, 2 + engine.KEEP_SNAPSHOTS + 1):
        apply_good(bench, f"good v{n}")
    assert (bench.settings.snapshots_dir / saved / "databases" / f"{bench.database}.dump").is_file()


def open_gate(bench: Bench) -> Path:
    gate = Path(bench.bin_dir).parent / "gate"
    (gate / GATE_OPEN).unlink()
    return gate


def operator(bench: Bench, action: str, *user: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "tests.integration.slice_harness", action, json.dumps(asdict(bench)), *user],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def delivered(pid: int, signum: int) -> bool:
    """True once no thread of pid has signum pending: its handler has run (or it died)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    pending = [int(line.split()[1], 16) for line in status.splitlines() if line.startswith(("SigPnd:", "ShdPnd:"))]
    return not any(mask & (1 << (signum - 1)) for mask in pending)


def test_sigterm_during_a_rollback_waits_for_it_to_finish(bench: Bench) -> None:
    """pg_restore --clean stopped half-way leaves dropped tables: the rollback finishes first, then the signal counts."""
    apply_good(bench, "good v1")
    bench.set_value("data 1")
    apply_good(bench, "good v2")
    bench.set_value("data 2")
    gate = open_gate(bench)
    child = operator(bench, "rollback")
    try:
        wait_until(lambda: (gate / GATE_STARTED).exists(), 120, "the rollback's pg_restore")
        child.send_signal(signal.SIGTERM)
        wait_until(lambda: delivered(child.pid, signal.SIGTERM), 30, "the signal to reach the operator")
        (gate / GATE_OPEN).touch()
        _, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 128 + signal.SIGTERM, stderr
    assert state(bench) == "rollback ok"
    assert bench.value() == "data 1"  # restored whole
    assert lock_holder(bench.psql(bench.journal_url)) is None


def test_a_dropped_session_during_an_automatic_rollback_is_rollback_failed_and_blocks_applies(bench: Bench) -> None:
    """SIGHUP to the whole process group (a dropped ssh session) kills pg_restore too: the state is unknown."""
    apply_good(bench, "good v1")
    bench.set_value("data 1")
    bench.write("bad v2")
    gate = open_gate(bench)
    child = operator(bench, "apply", start_new_session=True)
    try:
        wait_until(lambda: (gate / GATE_STARTED).exists(), 120, "the automatic rollback's pg_restore")
        os.killpg(child.pid, signal.SIGHUP)
        _, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    (gate / GATE_OPEN).touch()
    assert child.returncode == 128 + signal.SIGHUP, stderr
    assert state(bench) == "apply rollback-failed"
    assert lock_holder(bench.psql(bench.journal_url)) is None
    detail = Journal(bench.psql(bench.journal_url)).entries(1)[0].detail
    assert detail.startswith("verify failed (app.conf: bad v2); the automatic rollback to ") and "pg_restore failed" in detail

    bench.write("good v3")
    with pytest.raises(OpsError, match=r"slice 1's last rollback did not finish \(`apply rollback-failed`\)"):
        engine.run_apply(runtime(bench), 1)
    assert state(bench) == "apply rollback-failed"
    assert bench.installed.read_text().strip() == "bad v2"  # as the failed apply left it: the refused one changed nothing
    engine.run_rollback(runtime(bench), 1)
    assert bench.value() == "data 1" and state(bench) == "rollback ok"
    apply_good(bench, "good v3")


@pytest.fixture
def shared_project(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bench]:
    """The bench's project in a directory the postgres system user (here: an operator without sudo) can reach."""
    require(os.geteuid() == 0, "root (to act as two users)")
    operator_user = pwd.getpwnam("postgres")
    base = Path(tempfile.mkdtemp(prefix="aistack-owner-"))
    base.chmod(0o755)
    try:
        shutil.copytree(bench.project, base / "project", symlinks=True)
        shutil.copytree(bench.bin_dir, base / "bin", symlinks=True)
        for path in [base, *base.rglob("*")]:
            os.chown(path, operator_user.pw_uid, operator_user.pw_gid, follow_symlinks=False)
        shared = replace(bench, project=str(base / "project"), bin_dir=str(base / "bin"))
        module = make_slice(shared)
        monkeypatch.setattr(engine, "get_slice", lambda number: module)
        yield shared
    finally:
        shutil.rmtree(base)


def test_an_apply_by_another_user_than_the_last_stops_before_changing_anything(shared_project: Bench) -> None:
    """`sudo make slice-1` once, then `make slice-1`: the last verified files are root's, and used to fail after verify."""
    bench = shared_project
    bench.write("good v1")
    shutil.chown(bench.project, "postgres")
    operator_uid = pwd.getpwnam("postgres").pw_uid
    (Path(bench.project) / ".ops" / "snapshots").mkdir(parents=True)  # the operator's own first run made these
    for path in (Path(bench.project) / ".ops", Path(bench.project) / ".ops" / "snapshots"):
        os.chown(path, operator_uid, -1)
    report = engine.run_apply(runtime(bench), 1)  # as root: sudo make slice-1
    assert report.outcome == "ok"
    ops_dir = Path(bench.project) / ".ops"
    for path in [*ops_dir.glob("snapshots/**/*"), ops_dir / "applied"]:
        os.chown(path, operator_uid, -1, follow_symlinks=False)  # only the slice's applied state stays root's
    bench.write("good v2")
    shutil.chown(Path(bench.project) / "app.conf", "postgres")

    child = operator(bench, "apply", "postgres")
    _, stderr = child.communicate(timeout=120)
    applied = Path(bench.project) / ".ops" / "applied"
    assert child.returncode == 2, stderr
    assert stderr.startswith(
        f"error: {applied / 'slice01'} belongs to root (mode 700) and ops, running as postgres, must write"
    ), stderr
    assert f"sudo chown -R postgres: {Path(bench.project) / '.ops'}" in stderr
    assert bench.installed.read_text().strip() == "good v1" and state(bench) == "apply ok"  # nothing changed or journaled
