"""``ops backup drill``: restore the newest backup's databases into scratch databases and prove them identical.

Each database is restored into ``ops_restore_<name>`` and fingerprinted
(row count and row checksum per table); the fingerprints must equal those
taken from the dump's own snapshot at backup time. The scratch databases
are dropped afterwards. The other objects are verified (sha256, decode).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ops.backup import catalog
from ops.backup.context import BackupContext
from ops.backup.restore import feeder
from ops.backup.sources import postgres
from ops.backup.verify import run_verify
from ops.errors import OpsError
from ops.notify import Notice, NotifyConfig, notify


@dataclass
class TableCheck:
    database: str
    table: str
    ok: bool
    expected: list[str]
    restored: list[str] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "table": self.table,
            "ok": self.ok,
            "expected": self.expected,
            "restored": self.restored,
        }


@dataclass
class DrillReport:
    run_id: str
    tables: list[TableCheck] = field(default_factory=list)
    objects_ok: bool = False
    databases: int = 0  # restored and compared
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.objects_ok and self.databases > 0 and all(t.ok for t in self.tables) and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.run_id,
            "ok": self.ok,
            "objects_ok": self.objects_ok,
            "databases": self.databases,
            "tables": [t.to_dict() for t in self.tables],
            "problems": self.problems,
        }


def compare(database: str, expected: dict[str, list[str]], restored: dict[str, list[str]]) -> list[TableCheck]:
    """Return one check per table of either side: equal count and checksum, or why not."""
    return [
        TableCheck(database, table, expected.get(table) == restored.get(table), expected.get(table, []), restored.get(table))
        for table in sorted(set(expected) | set(restored))
    ]


def run_drill(ctx: BackupContext, run_id: str | None = None, keep: bool = False) -> DrillReport:
    """Given a backup id (default: the newest with Postgres), restore and compare it; return the report.

    Raise BackupNotFound if there is no such backup. A failed comparison is
    a report with ok False (and a notice), not an exception.
    """
    deadline = time.monotonic() + ctx.deadline_seconds
    manifest = catalog.load(ctx, run_id, source="postgres")
    report = DrillReport(manifest.run_id)
    verified = run_verify(ctx, manifest.run_id, deadline)
    report.objects_ok = verified.ok
    report.problems += [f"{c.object}: {c.detail}" for c in verified.checks if not c.ok]
    for entry in manifest.select("postgres"):
        if entry.meta.get("kind") != "database":
            continue
        database, scratch = entry.meta["database"], postgres.scratch_name(entry)
        try:
            postgres.restore(ctx, entry, "scratch", feeder(ctx, manifest, entry, deadline))
            report.tables += compare(database, entry.meta.get("tables", {}), postgres.fingerprints(ctx.postgres, scratch))
            report.databases += 1
        except OpsError as exc:
            report.problems.append(f"database {database}: {exc}")
        finally:
            if not keep:
                ctx.postgres.psql().query('DROP DATABASE IF EXISTS :"d" WITH (FORCE)', d=scratch)
    same = sum(t.ok for t in report.tables)
    message = f"drill of {manifest.run_id}: {report.databases} databases, {same}/{len(report.tables)} tables identical"
    if report.problems:
        message += "; " + "; ".join(report.problems[:3])
    notify(NotifyConfig(ctx.ping_url), Notice("drill", report.ok, message))
    return report
