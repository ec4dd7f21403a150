"""``ops backup drill``: restore the newest backup's databases into scratch databases and prove them identical.

Each database is restored into ``ops_restore_<name>`` and fingerprinted
(row count and row checksum per table); the fingerprints must equal those
taken from the dump's own snapshot at backup time. The scratch databases
are dropped afterwards. The other objects are verified (sha256, decode).

Each drill leaves a record beside the runs, ``<prefix>/drills/<when>-<passed|failed>-<run id>.json``
(the report), which the catalog skips (it is no run) and prune keeps for the retention window, the
newest passed one always; ``ops alerts check`` reads the newest passed one from the names alone: a
backup nobody restored proves little.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ops.backup import catalog
from ops.backup.context import BackupContext
from ops.backup.restore import feeder
from ops.backup.sources import postgres
from ops.backup.verify import run_verify
from ops.errors import OpsError
from ops.notify import Notice, NotifyConfig, notify

log = logging.getLogger("ops.backup")
DRILLS = "drills"  # the records' folder under the prefix
RECORD = re.compile(r"^(\d{8}T\d{6}Z)-(passed|failed)-(.+)\.json$")


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
    problem = record_drill(ctx, report)
    notify(NotifyConfig(ctx.ping_url), Notice("drill", report.ok, message + (f"; {problem}" if problem else "")))
    return report


def record_drill(ctx: BackupContext, report: DrillReport, at: datetime | None = None) -> str:
    """Given a drill's report, write its record to the bucket; return "" or why it could not be written (never raise)."""
    at = at or datetime.now(UTC)
    name = ctx.object_name(DRILLS, f"{at:%Y%m%dT%H%M%SZ}-{'passed' if report.ok else 'failed'}-{report.run_id}.json")
    try:
        ctx.bucket.write_text(name, json.dumps({**report.to_dict(), "at": at.isoformat()}, sort_keys=True))
    except OpsError as exc:
        log.warning("the drill's record was not written: %s", exc)
        return f"its record was not written ({exc}): the alerts will not count this drill"
    return ""


def newest_passed(names: list[str]) -> tuple[datetime, str] | None:
    """Given object names (any prefix), return (when, backup id) of the newest passed drill record, or None."""
    passed = []
    for name in names:
        match = RECORD.match(name.rsplit("/", 1)[-1])
        if match and match.group(2) == "passed" and name.rsplit("/", 2)[-2:-1] == [DRILLS]:
            passed.append((datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC), match.group(3)))
    return max(passed) if passed else None
