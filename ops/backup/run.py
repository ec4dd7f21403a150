"""``ops backup run``: stream every source to the bucket, then write the manifest, last.

Each object is produced, compressed (zstd), encrypted (age, when recipients
are set), hashed and uploaded in one pass: no copy on the VM's disk.

One source failing does not throw the others' good dumps away: its own
objects are removed, the manifest (written last) marks the run ``partial``
and names the failed source, the notifiers hear of it and BackupFailed is
raised (the CLI exits 2). A partial run never counts as a copy of the source
that failed. A scheduled run that lacks an object the previous run of its
schedule had (a database, a collection, a volume, the git bundle) is partial
too, naming what was lost. If every source fails, or the run passes its
deadline (OPS_BACKUP_DEADLINE_SECONDS, every stage killed), all its objects
are removed and no manifest is written: an incomplete run never counts.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ops.backup import catalog
from ops.backup.codec import tool_version
from ops.backup.context import BackupContext
from ops.backup.manifest import MANIFEST, Entry, Manifest, new_run_id
from ops.backup.pipeline import DeadlineExceeded, Producer, stream
from ops.backup.sources import for_schedule, get_source
from ops.backup.sources import secrets as secrets_source
from ops.backup.sources import volumes as volumes_source
from ops.errors import OpsError
from ops.notify import Notice, NotifyConfig, notify

log = logging.getLogger("ops.backup")
SCHEDULES = ("daily", "weekly", "manual", "pre-restore")
SCHEDULED = ("daily", "weekly")


class BackupFailed(OpsError):
    """A backup run failed: nothing of it counts, or (partial) only the sources that did not fail."""


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


class Emitter:
    """The ``emit`` a source calls: store one object of this run, within the run's deadline."""

    def __init__(self, ctx: BackupContext, manifest: Manifest, source: str, deadline: float) -> None:
        self.ctx, self.manifest, self.source, self.deadline = ctx, manifest, source, deadline

    def __call__(self, name: str, producer: Producer, meta: dict[str, Any] | None = None) -> Entry:
        entry = _store(self.ctx, self.manifest.run_id, self.source, name, producer, meta or {}, self.deadline)
        self.manifest.entries.append(entry)
        return entry


def run_backup(ctx: BackupContext, schedule: str = "daily", sources: list[str] | None = None, dry_run: bool = False) -> RunReport:
    """Given the context, back up sources (default: the schedule's) and return the report.

    Raise BackupFailed naming the source and stage that failed (after
    removing the failed objects, writing a partial manifest when other
    sources succeeded, and notifying), OpsError for an unknown source or
    schedule, ConfigError if the bucket does not exist.
    """
    if schedule not in SCHEDULES:
        raise OpsError(f"unknown schedule {schedule!r}: one of {', '.join(SCHEDULES)}")
    names = sources or for_schedule(schedule if schedule in SCHEDULED else "daily")
    if not sources and not ctx.codec.encrypted and secrets_source.NAME in names:
        names = [n for n in names if n != secrets_source.NAME]  # asked for by name, it refuses (never in clear)
        log.warning("%s", secrets_source.refusal())
    modules = [get_source(n) for n in names]
    run_id = new_run_id(schedule)
    report = RunReport(run_id, schedule, dry_run=dry_run, planned=names)
    if dry_run:
        return report
    # no bucket metadata call (storage.buckets.get is not in the object role): a missing bucket is named by this listing
    while ctx.bucket.list(ctx.object_name(run_id, "")):  # ids have one-second resolution: never share a run's prefix
        time.sleep(1)
        run_id = report.run_id = new_run_id(schedule)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    deadline = started + ctx.deadline_seconds
    manifest = Manifest(
        run_id=run_id,
        schedule=schedule,
        started_at=started_at,
        host=ctx.host,
        encrypted=ctx.codec.encrypted,
        recipients=list(ctx.codec.recipients),
        compression=f"zstd -{ctx.codec.zstd_level}",
        tools=_tools(ctx, names),
        sources=list(names),
    )
    current = ""
    try:
        for module in modules:
            current = module.NAME
            try:
                module.backup(ctx, Emitter(ctx, manifest, module.NAME, deadline))
            except DeadlineExceeded:
                raise
            except Exception as exc:
                _drop_source(ctx, manifest, module.NAME, exc)
        if len(manifest.failed) == len(modules):
            raise OpsError("; ".join(f"{s}: {why}" if len(modules) > 1 else why for s, why in manifest.failed.items()))
        if schedule in SCHEDULED:
            manifest.lost = _lost(ctx, manifest)
        manifest.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
        ctx.bucket.write_text(ctx.object_name(run_id, MANIFEST), manifest.to_json())
    except Exception as exc:
        _discard(ctx, run_id)
        why = f"the run passed its deadline of {ctx.deadline_seconds} s (OPS_BACKUP_DEADLINE_SECONDS), {exc}"
        message = f"backup {run_id} failed in source {current}: {why if isinstance(exc, DeadlineExceeded) else exc}"
        notify(NotifyConfig(ctx.ping_url), Notice("backup", False, message))
        raise BackupFailed(message) from exc
    report.entries = manifest.entries
    report.seconds = time.monotonic() - started
    if manifest.status == "partial":
        message = f"backup {run_id} is partial: " + "; ".join(
            [f"source {s} failed: {why}" for s, why in manifest.failed.items()]
            + ([f"lost since the previous {schedule} run: {', '.join(manifest.lost)}"] if manifest.lost else [])
            + [f"kept {', '.join(sorted(manifest.held())) or 'nothing'} ({len(report.entries)} objects)"]
        )
        notify(NotifyConfig(ctx.ping_url), Notice("backup", False, message))
        raise BackupFailed(message)
    done = f"backup {run_id}: {len(report.entries)} objects, {report.size} bytes"
    notify(NotifyConfig(ctx.ping_url), Notice("backup", True, done))
    return report


def _drop_source(ctx: BackupContext, manifest: Manifest, source: str, exc: Exception) -> None:
    """Record that source failed in this run and remove the objects it had stored."""
    manifest.failed[source] = str(exc)
    log.error("backup %s: source %s failed: %s", manifest.run_id, source, exc)
    for entry in [e for e in manifest.entries if e.source == source]:
        with contextlib.suppress(OpsError):  # prune removes what is left; the failure being reported matters more
            ctx.bucket.delete(entry.object)
    manifest.entries = [e for e in manifest.entries if e.source != source]


def _lost(ctx: BackupContext, manifest: Manifest) -> list[str]:
    """Return "<source>/<name>" of the objects the previous run of this schedule held and this one lacks.

    Only sources this run took and that did not fail count (a failure is
    reported as such); volumes excluded since then by OPS_BACKUP_VOLUMES_EXCLUDE do not.
    """
    previous = catalog.newest(ctx, manifest.schedule, before=manifest.run_id)
    if previous is None:
        return []
    took = set(manifest.sources) - set(manifest.failed)
    missing = []
    for unit in sorted(previous.units() - manifest.units()):
        source, _, name = unit.partition("/")
        if source not in took or (source == "volumes" and volumes_source.excluded(ctx, name.removesuffix(".tar"))):
            continue
        missing.append(unit)
    return missing


def _store(
    ctx: BackupContext, run_id: str, source: str, name: str, producer: Producer, meta: dict[str, Any], deadline: float
) -> Entry:
    """Stream one producer through the codec into its object; return its manifest entry."""
    object_name = ctx.object_name(run_id, source, name + ctx.codec.suffix)
    with ctx.bucket.writer(object_name) as out:
        result = stream(producer, ctx.codec.encode(), out.write, deadline)
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
