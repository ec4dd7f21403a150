"""The operations journal and the operator lock, in the stack's Postgres (schema ``ops``).

Every slice operation is a journal row (when, who, slice, action, plan hash,
outcome, duration). One lock row keeps two operators from running at once;
a lock whose holder stopped sending heartbeats is reported as stale, never
broken silently. SQL goes through psql (in the postgres container, or a
local one in tests) with psql variables for every value.
"""

from __future__ import annotations

import csv
import getpass
import io
import os
import socket
import subprocess
from dataclasses import dataclass
from typing import Any

from ops.errors import OpsError, ServiceError

STALE_AFTER_MINUTES = 30

SCHEMA = """
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
CREATE TABLE IF NOT EXISTS ops.lock (
  id int PRIMARY KEY CHECK (id = 1),
  holder text NOT NULL,
  host text NOT NULL,
  pid int NOT NULL,
  operation text NOT NULL,
  acquired_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);
"""


class LockError(OpsError):
    """Another operation holds the lock (or held it and looks stale)."""


@dataclass(frozen=True)
class Psql:
    """Run SQL with psql: argv is the psql invocation (local, or `docker compose exec -T postgres psql ...`)."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()

    def query(self, sql: str, **variables: object) -> list[list[str]]:
        """Run sql (psql variables as :'name'); return the rows of its output. Raise ServiceError on an SQL error."""
        argv = [*self.argv, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--csv", "-t"]
        for name, value in variables.items():
            argv += ["-v", f"{name}={'' if value is None else value}"]
        proc = subprocess.run(argv, input=sql, capture_output=True, text=True, env={**os.environ, **dict(self.env)}, timeout=120)
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

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class Journal:
    def __init__(self, psql: Psql) -> None:
        self.psql = psql
        self.psql.query(SCHEMA)

    def start(self, slice_number: int | None, action: str, plan_hash: str = "") -> int:
        user, host, _ = whoami()
        rows = self.psql.query(
            "INSERT INTO ops.journal (actor, host, slice, action, plan_hash) "
            "VALUES (:'actor', :'host', NULLIF(:'slice', '')::int, "
            ":'action', :'plan_hash') RETURNING id;",
            actor=user,
            host=host,
            slice="" if slice_number is None else slice_number,
            action=action,
            plan_hash=plan_hash,
        )
        return int(rows[0][0])

    def finish(self, entry_id: int, outcome: str, detail: str = "") -> None:
        self.psql.query(
            "UPDATE ops.journal SET finished_at = now(), outcome = :'outcome', detail = :'detail', "
            "duration_ms = (extract(epoch FROM now() - started_at) * 1000)::int WHERE id = :'id';",
            outcome=outcome,
            detail=detail[:4000],
            id=entry_id,
        )

    def entries(self, limit: int = 50) -> list[Entry]:
        rows = self.psql.query(
            "SELECT id, started_at, actor, coalesce(slice::text, ''), action, coalesce(plan_hash, ''), outcome, "
            "coalesce(detail, ''), coalesce(duration_ms::text, '') FROM ops.journal ORDER BY id DESC LIMIT :'limit';",
            limit=limit,
        )
        return [
            Entry(int(r[0]), r[1], r[2], int(r[3]) if r[3] else None, r[4], r[5], r[6], r[7], int(r[8]) if r[8] else None)
            for r in rows
        ]

    def slice_states(self) -> dict[int, Entry]:
        """The latest finished apply, verify or rollback of each slice."""
        states: dict[int, Entry] = {}
        for entry in reversed(self.entries(1000)):
            if entry.slice is not None and entry.outcome != "running":
                states[entry.slice] = entry
        return states

    def verified(self, slice_number: int) -> bool:
        """True if the slice's latest operation left it applied and verified."""
        entry = self.slice_states().get(slice_number)
        return entry is not None and entry.action in ("apply", "verify") and entry.outcome == "ok"


class Lock:
    """The single operator lock. Use as a context manager; raise LockError when it is held."""

    def __init__(self, psql: Psql, operation: str) -> None:
        self.psql, self.operation = psql, operation
        self.user, self.host, self.pid = whoami()

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
            "SELECT holder, host, pid, operation, acquired_at, "
            "(extract(epoch FROM now() - heartbeat_at) / 60)::int FROM ops.lock WHERE id = 1;"
        )
        if not held:  # released between the two statements
            return self.acquire()
        holder, host, pid, operation, since, idle = held[0]
        message = f"another operation holds the lock: {operation!r} by {holder}@{host} (pid {pid}) since {since}"
        if int(idle) >= STALE_AFTER_MINUTES:
            message += (
                f"; no heartbeat for {idle} min, so it looks stale. If no operation is running, "
                "release it with `ops lock break --yes`"
            )
        raise LockError(message)

    def heartbeat(self) -> None:
        self.psql.query(
            "UPDATE ops.lock SET heartbeat_at = now() WHERE id = 1 AND pid = :'pid' AND host = :'host';",
            pid=self.pid,
            host=self.host,
        )

    def release(self) -> None:
        self.psql.query("DELETE FROM ops.lock WHERE id = 1 AND pid = :'pid' AND host = :'host';", pid=self.pid, host=self.host)

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def break_lock(psql: Psql) -> str | None:
    """Remove the lock whoever holds it; return who held it, or None if it was free."""
    rows = psql.query("DELETE FROM ops.lock WHERE id = 1 RETURNING holder || '@' || host || ' (' || operation || ')';")
    return rows[0][0] if rows else None
