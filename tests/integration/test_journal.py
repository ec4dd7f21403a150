"""The journal and the lock on a real PostgreSQL, through psql as the engine uses them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from ops.errors import ServiceError
from ops.journal import Journal, Lock, LockError, Psql, break_lock
from ops.local.processes import PostgresServer

pytestmark = pytest.mark.integration


@pytest.fixture
def psql(postgres: PostgresServer) -> Iterator[Psql]:
    database = f"journal_{uuid.uuid4().hex[:8]}"
    admin = Psql(("psql", postgres.dsn()))
    admin.query(f'CREATE DATABASE "{database}";')
    yield Psql(("psql", postgres.dsn(database)))
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
