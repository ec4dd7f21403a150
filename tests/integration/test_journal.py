"""The journal and the lock on a real PostgreSQL, through psql as the engine uses them."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops import tools
from ops.errors import ServiceError
from ops.journal import Journal, Lock, LockError, Psql, break_lock, lock_holder
from ops.local.processes import PostgresServer, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def psql(postgres: PostgresServer) -> Iterator[Psql]:
    database = f"journal_{uuid.uuid4().hex[:8]}"
    psql_bin = tools.postgres_bin("psql") or "psql"  # the server's major: Debian's psql is 15
    admin = Psql((psql_bin, postgres.dsn()))
    admin.query(f'CREATE DATABASE "{database}";')
    yield Psql((psql_bin, postgres.dsn(database)))
    admin.query(f'DROP DATABASE "{database}" WITH (FORCE);')


def test_journal_records_operations_and_slice_states(psql: Psql) -> None:
    journal = Journal(psql)
    first = journal.start(1, "apply", "abc123")
    journal.finish(first, "ok", "it's done; \"quoted\" and 'quoted'")
    second = journal.start(2, "apply")
    journal.finish(second, "rolled-back", "verify failed")
    entries = journal.entries()
    assert [(e.slice, e.action, e.outcome) for e in entries] == [(2, "apply", "rolled-back"), (1, "apply", "ok")]
    assert entries[1].detail == "it's done; \"quoted\" and 'quoted'" and entries[1].plan_hash == "abc123"
    assert entries[1].duration_ms is not None
    assert journal.verified(1) and not journal.verified(2) and not journal.verified(3)


def test_second_operator_is_refused_with_the_holder_named(psql: Psql) -> None:
    Journal(psql)
    with Lock(psql, "apply slice 1"):
        other = Lock(psql, "apply slice 2")
        other.pid += 1  # another process
        with pytest.raises(LockError, match=r"'apply slice 1' by .* \(pid \d+\) since"):
            other.acquire()
    Lock(psql, "apply slice 2").acquire()  # free again after release


def test_stale_lock_is_reported_not_broken(psql: Psql) -> None:
    Journal(psql)
    psql.query(
        "INSERT INTO ops.lock (id, holder, host, pid, operation, heartbeat_at) "
        "VALUES (1, 'bob', 'vm', 7, 'rollback slice 3', now() - interval '45 minutes');"
    )
    with pytest.raises(LockError, match="no heartbeat for 45 min, so it looks stale"):
        Lock(psql, "apply slice 1").acquire()
    assert psql.query("SELECT holder FROM ops.lock;") == [["bob"]]  # still there
    assert break_lock(psql) == "bob@vm (rollback slice 3)"
    assert break_lock(psql) is None


def test_sql_error_is_a_clear_error(psql: Psql) -> None:
    with pytest.raises(ServiceError, match=r'psql failed: .*relation "nope" does not exist'):
        psql.query("SELECT * FROM nope;")


def test_a_statement_that_hangs_is_an_error_naming_it_and_the_timeout(psql: Psql) -> None:
    slow = dataclasses.replace(psql, timeout=1)
    with pytest.raises(ServiceError, match=r"^psql did not finish within 1 s running: SELECT pg_sleep\(10\);$"):
        slow.query("SELECT pg_sleep(10);")


def test_a_killed_operation_reads_interrupted_and_no_longer_counts_as_verified(psql: Psql) -> None:
    journal = Journal(psql)
    journal.finish(journal.start(1, "apply"), "ok")
    journal.start(1, "verify")  # never finished, and no lock held: its process was killed
    assert journal.entries(1)[0].outcome == "running"  # as written
    assert journal.slice_states()[1].outcome == "interrupted"
    assert not journal.verified(1)  # the earlier "apply ok" does not let slice 2 go
    with Lock(psql, "verify slice 1"):  # while its own process holds the lock, it is at work
        assert journal.slice_states()[1].outcome == "running"


def test_the_lock_keeps_beating_while_a_long_operation_holds_it(psql: Psql) -> None:
    Journal(psql)
    with Lock(psql, "apply slice 1", heartbeat_every=0.2):
        psql.query("UPDATE ops.lock SET heartbeat_at = now() - interval '45 minutes';")  # as after a long compose up
        idle = "SELECT (extract(epoch FROM now() - heartbeat_at) / 60)::int FROM ops.lock;"
        wait_until(lambda: int(psql.query(idle)[0][0]) < 1, 60, "a heartbeat from the lock's thread")
        other = Lock(psql, "apply slice 2")
        other.pid += 1
        with pytest.raises(LockError) as caught:
            other.acquire()
        assert "stale" not in str(caught.value)


RACER = """
import sys
from ops.journal import Journal, Lock, LockError, Psql
psql = Psql((sys.argv[1], sys.argv[2]))
sys.stdin.readline()  # the start signal, written to the four racers one after the other
try:
    Journal(psql)  # a fresh database: both create the schema at once
    Lock(psql, "apply slice 1").acquire()
except LockError:
    print("lost")
else:
    print("won")
"""


def test_two_operators_racing_for_the_lock_exactly_one_wins(psql: Psql) -> None:
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, *psql.argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for racer in racers:
        assert racer.stdin is not None
        racer.stdin.write("go\n")
        racer.stdin.flush()
    results = [racer.communicate(timeout=120) for racer in racers]
    assert sorted(out.strip() for out, _ in results) == ["lost", "lost", "lost", "won"], results
    winner = next(racer.pid for racer, (out, _) in zip(racers, results, strict=True) if out.strip() == "won")
    holder = lock_holder(psql)
    assert holder is not None and (holder.host, holder.pid) == (socket.gethostname(), winner)


OPERATOR = """
import sys
from pathlib import Path
from ops.config import load_settings
from ops.interrupts import Interrupted
from ops.journal import Psql
from ops.runtime.compose import Compose
from ops.slices import engine
from ops.slices.base import Target

project, psql_bin, dsn, gateway = sys.argv[1:5]
settings = load_settings(Path(project))
target = Target(gateway, "sk-x", gateway, "pk", "sk", timeout=600)
runtime = engine.Runtime(settings, Compose.for_settings(settings), Psql((psql_bin, dsn)), target)
try:
    engine.run_verify(runtime, 1)
except Interrupted as exc:
    sys.exit(exc.exit_code)
"""


@pytest.mark.parametrize(
    ("signum", "group"),
    [(signal.SIGTERM, False), (signal.SIGHUP, False), (signal.SIGHUP, True)],
    ids=["sigterm", "sighup", "sighup-to-the-process-group"],
)
def test_sigterm_or_sighup_mid_operation_releases_the_lock_and_journals_interrupted(
    psql: Psql, project: Path, signum: int, group: bool
) -> None:
    """The engine in a child process, its verify stuck on a gateway that never answers, then killed as ssh or
    systemd do. A dropped ssh session signals the whole process group: psql and compose die with the operator."""
    journal = Journal(psql)
    journal.finish(journal.start(1, "apply"), "ok")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        gateway = f"http://127.0.0.1:{silent.getsockname()[1]}"
        child = subprocess.Popen(
            [sys.executable, "-c", OPERATOR, str(project), *psql.argv, gateway],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=group,
        )
        try:
            wait_until(lambda: journal.slice_states()[1].outcome == "running", 60, "the verify to start")
        except ServiceError:
            child.kill()
            pytest.fail(f"the operator never started: {child.communicate()[1]}")
        if group:
            os.killpg(child.pid, signum)
        else:
            child.send_signal(signum)
        _, stderr = child.communicate(timeout=120)
    assert child.returncode == 128 + signum, stderr
    assert lock_holder(psql) is None
    latest = journal.entries(1)[0]
    assert (latest.action, latest.outcome) == ("verify", "interrupted")
    assert latest.detail.startswith(
        f"interrupted by {signal.Signals(signum).name} during verify; run `ops slice 1 --verify` again"
    )
    assert not journal.verified(1)


HOLDER = """
import sys
from ops.journal import Journal, Lock, Psql
psql = Psql((sys.argv[1], sys.argv[2]))
with Lock(psql, "apply slice 1", heartbeat_every=3600):
    Journal(psql).start(1, "apply")
    print("holding", flush=True)
    sys.stdin.read()  # until killed
"""


def test_an_operator_killed_with_sigkill_reads_interrupted_and_its_lock_names_it_dead(psql: Psql) -> None:
    """SIGKILL (or the OOM killer) runs no cleanup: the lock row stays with a fresh heartbeat and a dead pid."""
    journal = Journal(psql)
    journal.finish(journal.start(1, "apply"), "ok")
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, *psql.argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "holding", child.communicate()
    assert journal.slice_states()[1].outcome == "running"  # alive: at work
    child.kill()
    child.communicate(timeout=60)
    holder = lock_holder(psql)
    assert holder is not None and holder.pid == child.pid  # still there: nothing released it
    assert journal.slice_states()[1].outcome == "interrupted"
    assert not journal.verified(1)
    with pytest.raises(
        LockError,
        match=rf"its process \(pid {child.pid} on this host\) no longer exists, so it looks stale. "
        r"If no operation is running, release it with `ops lock break --yes`",
    ):
        Lock(psql, "apply slice 1").acquire()
