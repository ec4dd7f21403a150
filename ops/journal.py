"""The operations journal and the operator lock, in the stack's Postgres (schema ``ops``).

Every slice operation is a journal row (when, who, slice, action, plan hash,
outcome, duration). One lock row keeps two operators from running at once;
a lock whose holder stopped sending heartbeats is reported as stale, never
broken silently. SQL goes through psql (in the postgres container, or a
local one in tests) with psql variables for every value.

A row is ``running`` while its operation runs, under the lock, and
``rolling-back`` while it restores a snapshot. Such a row whose process no
longer holds the lock, or holds it but is dead (its pid is gone on this host,
or it sent no heartbeat for STALE_AFTER_SECONDS), was killed (SIGKILL, a
reboot): ``running`` reads as ``interrupted``, ``rolling-back`` as
``rollback-failed`` (a half-restored state). A slice whose latest operation
did not end ``ok`` (failed, rolled back, rollback-failed, interrupted,
running) does not count as applied and verified, so no slice that needs it
can be applied.
"""

from __future__ import annotations

import csv
import getpass
import io
import os
import socket
import subprocess
import threading
from dataclasses import dataclass, replace
from typing import Any

from ops.errors import OpsError, ServiceError
from ops.interrupts import Interrupted, shielded

HEARTBEAT_SECONDS = 60.0  # a thread sends one while the lock is held, so a long apply never looks stale
STALE_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS  # three missed heartbeats: the holder is dead (or frozen)
RUNNING = ("running", "rolling-back")  # the outcomes of an operation still under way

# Two operators starting at once on a fresh database would race on CREATE SCHEMA (a unique
# violation in pg_namespace): the whole schema is created under one transaction-level advisory lock.
SCHEMA = """
BEGIN;
SELECT pg_advisory_xact_lock(7355608);
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS ops.journal (
  id bigserial PRIMARY KEY,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  actor text NOT NULL,
  host text NOT NULL,
  slice int,
  action text NOT NULL,
  plan_hash text,
  outcome text NOT NULL DEFAULT 'running',
  detail text,
  duration_ms int
);
ALTER TABLE ops.journal ADD COLUMN IF NOT EXISTS pid int;
CREATE TABLE IF NOT EXISTS ops.lock (
  id int PRIMARY KEY CHECK (id = 1),
  holder text NOT NULL,
  host text NOT NULL,
  pid int NOT NULL,
  operation text NOT NULL,
  acquired_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);
COMMIT;
"""


class LockError(OpsError):
    """Another operation holds the lock (or held it and looks stale)."""


@dataclass(frozen=True)
class Psql:
    """Run SQL with psql: argv is the psql invocation (local, or `docker compose exec -T postgres psql ...`)."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    timeout: float = 120.0

    def query(self, sql: str, **variables: object) -> list[list[str]]:
        """Run sql (psql variables as :'name'); return the rows of its output.

        Raise ServiceError on an SQL error, or when psql does not finish within timeout seconds.
        """
        argv = [*self.argv, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--csv", "-t"]
        for name, value in variables.items():
            argv += ["-v", f"{name}={'' if value is None else value}"]
        try:
            proc = subprocess.run(
                argv, input=sql, capture_output=True, text=True, env={**os.environ, **dict(self.env)}, timeout=self.timeout
            )
        except subprocess.TimeoutExpired as exc:
            # name the statement, never the argv: a connection string there can hold a password
            statement = " ".join(sql.split())[:80]
            raise ServiceError(f"psql did not finish within {self.timeout:g} s running: {statement}") from exc
        if proc.returncode != 0:
            raise ServiceError(f"psql failed: {(proc.stderr or proc.stdout).strip()[-600:]}")
        return [row for row in csv.reader(io.StringIO(proc.stdout)) if row]


def whoami() -> tuple[str, str, int]:
    """Return (user, host, pid) of this operator process."""
    return getpass.getuser(), socket.gethostname(), os.getpid()


@dataclass(frozen=True)
class Entry:
    id: int
    started_at: str
    actor: str
    slice: int | None
    action: str
    plan_hash: str
    outcome: str
    detail: str
    duration_ms: int | None
    host: str = ""
    pid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class LockHolder:
    """Who holds the operator lock, and how long ago it sent its last heartbeat."""

    host: str
    pid: int
    idle_seconds: float = 0.0

    def gone(self, here: str | None = None) -> str:
        """Return why the holder is dead (its pid is gone on this host, here; or no heartbeat
        for STALE_AFTER_SECONDS), or "" while it may still be at work."""
        if self.idle_seconds > STALE_AFTER_SECONDS:
            return f"no heartbeat for {self.idle_seconds / 60:.0f} min"
        if self.host == (here or socket.gethostname()) and not _pid_exists(self.pid):
            return f"its process (pid {self.pid} on this host) no longer exists"
        return ""


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def effective_outcome(entry: Entry, holder: LockHolder | None) -> str:
    """Given a journal row and the lock's holder (or None), return the row's outcome as it stands.

    A ``running`` or ``rolling-back`` row is still under way only while the process that wrote
    it holds the lock and is alive; otherwise it died without finishing the row: a ``running``
    one reads ``interrupted``, a ``rolling-back`` one ``rollback-failed``.
    """
    if entry.outcome not in RUNNING:
        return entry.outcome
    if holder is not None and (holder.host, holder.pid) == (entry.host, entry.pid) and not holder.gone():
        return entry.outcome
    return "interrupted" if entry.outcome == "running" else "rollback-failed"


def satisfies_prerequisite(entry: Entry | None) -> bool:
    """Given a slice's latest operation (outcome already effective) or None, return True if it left the slice verified."""
    return entry is not None and entry.action in ("apply", "verify") and entry.outcome == "ok"


class Journal:
    def __init__(self, psql: Psql) -> None:
        self.psql = psql
        self.psql.query(SCHEMA)

    def start(self, slice_number: int | None, action: str, plan_hash: str = "") -> int:
        """Journal an operation as running by this process; return its row id."""
        user, host, pid = whoami()
        rows = self.psql.query(
            "INSERT INTO ops.journal (actor, host, pid, slice, action, plan_hash) "
            "VALUES (:'actor', :'host', :'pid', NULLIF(:'slice', '')::int, "
            ":'action', :'plan_hash') RETURNING id;",
            actor=user,
            host=host,
            pid=pid,
            slice="" if slice_number is None else slice_number,
            action=action,
            plan_hash=plan_hash,
        )
        return int(rows[0][0])

    def mark(self, entry_id: int, outcome: str, detail: str = "") -> None:
        """Record that a running operation entered a phase (outcome one of RUNNING), with what it is doing."""
        assert outcome in RUNNING
        self.psql.query(
            "UPDATE ops.journal SET outcome = :'outcome', detail = :'detail' WHERE id = :'id';",
            outcome=outcome,
            detail=detail[:4000],
            id=entry_id,
        )

    def finish(self, entry_id: int, outcome: str, detail: str = "") -> None:
        self.psql.query(
            "UPDATE ops.journal SET finished_at = now(), outcome = :'outcome', detail = :'detail', "
            "duration_ms = (extract(epoch FROM now() - started_at) * 1000)::int WHERE id = :'id';",
            outcome=outcome,
            detail=detail[:4000],
            id=entry_id,
        )

    _COLUMNS = (
        "id, started_at, actor, coalesce(slice::text, ''), action, coalesce(plan_hash, ''), outcome, "
        "coalesce(detail, ''), coalesce(duration_ms::text, ''), host, coalesce(pid::text, '')"
    )

    @staticmethod
    def _entry(r: list[str]) -> Entry:
        def number(text: str) -> int | None:
            return int(text) if text else None

        return Entry(int(r[0]), r[1], r[2], number(r[3]), r[4], r[5], r[6], r[7], number(r[8]), r[9], number(r[10]))

    def entries(self, limit: int = 50) -> list[Entry]:
        """The newest limit rows, newest first, as written (a killed operation's row still says running)."""
        rows = self.psql.query(f"SELECT {self._COLUMNS} FROM ops.journal ORDER BY id DESC LIMIT :'limit';", limit=limit)
        return [self._entry(r) for r in rows]

    def slice_states(self) -> dict[int, Entry]:
        """Each slice's latest operation, its outcome made effective (a dead ``running`` row reads ``interrupted``,
        a dead ``rolling-back`` one ``rollback-failed``)."""
        rows = self.psql.query(
            f"SELECT DISTINCT ON (slice) {self._COLUMNS} FROM ops.journal WHERE slice IS NOT NULL ORDER BY slice, id DESC;"
        )
        holder = lock_holder(self.psql)
        states = {}
        for entry in map(self._entry, rows):
            assert entry.slice is not None
            states[entry.slice] = replace(entry, outcome=effective_outcome(entry, holder))
        return states

    def verified(self, slice_number: int) -> bool:
        """True if the slice's latest operation left it applied and verified."""
        return satisfies_prerequisite(self.slice_states().get(slice_number))


def lock_holder(psql: Psql) -> LockHolder | None:
    """Return who holds the operator lock, or None when it is free."""
    rows = psql.query("SELECT host, pid, extract(epoch FROM now() - heartbeat_at) FROM ops.lock WHERE id = 1;")
    return LockHolder(rows[0][0], int(rows[0][1]), float(rows[0][2])) if rows else None


class Lock:
    """The single operator lock. Use as a context manager; raise LockError when it is held.

    While held as a context manager, a background thread sends a heartbeat every
    heartbeat_every seconds, so a long operation never looks stale.
    """

    def __init__(self, psql: Psql, operation: str, heartbeat_every: float = HEARTBEAT_SECONDS) -> None:
        self.psql, self.operation = psql, operation
        self.user, self.host, self.pid = whoami()
        self.heartbeat_every = heartbeat_every
        self._stop = threading.Event()
        self._beating: threading.Thread | None = None

    def acquire(self) -> None:
        rows = self.psql.query(
            "INSERT INTO ops.lock (id, holder, host, pid, operation) VALUES (1, :'holder', :'host', :'pid', :'operation') "
            "ON CONFLICT (id) DO NOTHING RETURNING id;",
            holder=self.user,
            host=self.host,
            pid=self.pid,
            operation=self.operation,
        )
        if rows:
            return
        held = self.psql.query(
            "SELECT holder, host, pid, operation, acquired_at, extract(epoch FROM now() - heartbeat_at) "
            "FROM ops.lock WHERE id = 1;"
        )
        if not held:  # released between the two statements
            return self.acquire()
        holder, host, pid, operation, since, idle = held[0]
        message = f"another operation holds the lock: {operation!r} by {holder}@{host} (pid {pid}) since {since}"
        gone = LockHolder(host, int(pid), float(idle)).gone()
        if gone:
            message += f"; {gone}, so it looks stale. If no operation is running, release it with `ops lock break --yes`"
        raise LockError(message)

    def heartbeat(self) -> None:
        self.psql.query(
            "UPDATE ops.lock SET heartbeat_at = now() WHERE id = 1 AND pid = :'pid' AND host = :'host';",
            pid=self.pid,
            host=self.host,
        )

    def release(self) -> None:
        self.psql.query("DELETE FROM ops.lock WHERE id = 1 AND pid = :'pid' AND host = :'host';", pid=self.pid, host=self.host)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_every):
            try:
                self.heartbeat()
            except OpsError:  # Postgres busy or restarting: the next beat tries again
                continue

    def __enter__(self) -> Lock:
        try:
            with shielded():  # a signal while the row is being inserted is raised once we know we hold it
                self.acquire()
                self._stop.clear()
                self._beating = threading.Thread(target=self._beat, name=f"ops-lock-heartbeat-{self.pid}", daemon=True)
                self._beating.start()
        except Interrupted:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        with shielded():  # a second SIGTERM must not leave the lock behind
            self._stop.set()
            if self._beating is not None:
                self._beating.join()
                self._beating = None
            self.release()


def break_lock(psql: Psql) -> str | None:
    """Remove the lock whoever holds it; return who held it, or None if it was free."""
    rows = psql.query("DELETE FROM ops.lock WHERE id = 1 RETURNING holder || '@' || host || ' (' || operation || ')';")
    return rows[0][0] if rows else None
