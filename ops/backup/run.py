"""``ops backup run``: stream every source to the bucket, then write the manifest, last.

Each object is produced, compressed (zstd), encrypted (age, when recipients
are set), hashed and uploaded in one pass: no copy on the VM's disk. If any
stage of any source fails, the run's objects are removed, no manifest is
written, the notifiers hear of it and BackupFailed is raised: an incomplete
run never counts as a backup.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ops.backup import catalog
from ops.backup.codec import tool_version
from ops.backup.context import BackupContext
from ops.backup.manifest import MANIFEST, Entry, Manifest, new_run_id
from ops.backup.pipeline import Producer, stream
from ops.backup.sources import for_schedule, get_source
from ops.errors import OpsError
from ops.notify import Notice, NotifyConfig, notify

SCHEDULES = ("daily", "weekly", "manual", "pre-restore")


class BackupFailed(OpsError):
    """A backup run failed; nothing of it counts."""


@dataclass
class RunReport:
    run_id: str
    schedule: str
    entries: list[Entry] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False
    planned: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.run_id,
            "schedule": self.schedule,
            "dry_run": self.dry_run,
            "sources": self.planned,
            "seconds": round(self.seconds, 2),
            "size": self.size,
            "objects": [
                {"source": e.source, "name": e.name, "object": e.object, "size": e.size, "sha256": e.sha256} for e in self.entries
            ],
        }


def _tools(ctx: BackupContext, sources: list[str]) -> dict[str, str]:
    found = {"zstd": tool_version(["zstd", "--version"])}
    if ctx.codec.encrypted:
        found["age"] = tool_version(["age", "--version"])
    if "postgres" in sources:
        found["pg_dump"] = tool_version(list(ctx.postgres.command("pg_dump", "--version", connect=False).argv))
    if "git" in sources:
        found["git"] = tool_version(["git", "--version"])
    return found


def run_backup(ctx: BackupContext, schedule: str = "daily", sources: list[str] | None = None, dry_run: bool = False) -> RunReport:
    """Given the context, back up sources (default: the schedule's) and return the report.

    Raise BackupFailed naming the source and stage that failed (after
    removing the run's objects and notifying), OpsError for an unknown source
    or schedule, ConfigError if the bucket does not exist.
    """
    if schedule not in SCHEDULES:
        raise OpsError(f"unknown schedule {schedule!r}: one of {', '.join(SCHEDULES)}")
    names = sources or for_schedule(schedule if schedule in ("daily", "weekly") else "daily")
    modules = [get_source(n) for n in names]
    run_id = new_run_id(schedule)
    report = RunReport(run_id, schedule, dry_run=dry_run, planned=names)
    if dry_run:
        return report
    ctx.bucket.check()
    while ctx.bucket.list(ctx.object_name(run_id, "")):  # ids have one-second resolution: never share a run's prefix
        time.sleep(1)
        run_id = report.run_id = new_run_id(schedule)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    manifest = Manifest(
        run_id=run_id,
        schedule=schedule,
        started_at=started_at,
        host=ctx.host,
        encrypted=ctx.codec.encrypted,
        recipients=list(ctx.codec.recipients),
        compression=f"zstd -{ctx.codec.zstd_level}",
        tools=_tools(ctx, names),
    )
    current = ""
    try:
        for module in modules:
            current = module.NAME

            def emit(name: str, producer: Producer, meta: dict[str, Any] | None = None, source: str = module.NAME) -> Entry:
                entry = _store(ctx, run_id, source, name, producer, meta or {})
                manifest.entries.append(entry)
                return entry

            module.backup(ctx, emit)
        manifest.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
        ctx.bucket.write_text(ctx.object_name(run_id, MANIFEST), manifest.to_json())
    except Exception as exc:
        _discard(ctx, run_id)
        message = f"backup {run_id} failed in source {current}: {exc}"
        notify(NotifyConfig(ctx.ping_url), Notice("backup", False, message))
        raise BackupFailed(message) from exc
    report.entries = manifest.entries
    report.seconds = time.monotonic() - started
    done = f"backup {run_id}: {len(report.entries)} objects, {report.size} bytes"
    notify(NotifyConfig(ctx.ping_url), Notice("backup", True, done))
    return report


def _store(ctx: BackupContext, run_id: str, source: str, name: str, producer: Producer, meta: dict[str, Any]) -> Entry:
    """Stream one producer through the codec into its object; return its manifest entry."""
    object_name = ctx.object_name(run_id, source, name + ctx.codec.suffix)
    with ctx.bucket.writer(object_name) as out:
        result = stream(producer, ctx.codec.encode(), out.write)
    return Entry(source, name, object_name, result.size, result.sha256, round(result.seconds, 3), meta=meta)


def _discard(ctx: BackupContext, run_id: str) -> None:
    """Remove a failed run's objects (best effort: prune removes what is left)."""
    try:
        for run in catalog.runs(ctx):
            if run.run_id == run_id:
                for name in run.objects:
                    ctx.bucket.delete(name)
    except Exception:  # the failure being reported matters more; prune removes the rest
        pass
