"""What the bucket holds: runs with a manifest (complete or partial), incomplete ones (objects but no
manifest), and unreadable ones (a manifest this ops cannot parse: a newer ops may have written it)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ops.backup.context import BackupContext
from ops.backup.manifest import MANIFEST, RUN_ID, BackupNotFound, Manifest, run_schedule, run_time
from ops.errors import OpsError


@dataclass
class RunInfo:
    run_id: str
    complete: bool
    objects: list[str] = field(default_factory=list)
    size: int = 0
    manifest: Manifest | None = None
    problem: str = ""
    unreadable: bool = False  # the manifest exists but cannot be parsed: never deleted automatically

    @property
    def status(self) -> str:
        if self.manifest is not None:
            return self.manifest.status
        return "unreadable" if self.unreadable else "incomplete"

    @property
    def state(self) -> str:
        """Return the status with what is wrong, in one line (what `ops backup list` prints)."""
        if self.manifest is None:
            return f"{self.status.upper()} ({self.problem})"
        gone = [f"failed: {', '.join(self.manifest.failed)}"] if self.manifest.failed else []
        gone += [f"lost: {', '.join(self.manifest.lost)}"] if self.manifest.lost else []
        return self.status + (f" ({'; '.join(gone)})" if gone else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.run_id,
            "state": self.state,
            "complete": self.complete,
            "status": self.status,
            "failed": dict(self.manifest.failed) if self.manifest else {},
            "lost": list(self.manifest.lost) if self.manifest else [],
            "objects": len(self.objects),
            "size": self.size,
            "sources": sorted({e.source for e in self.manifest.entries}) if self.manifest else [],
            "encrypted": bool(self.manifest and self.manifest.encrypted),
            "problem": self.problem,
        }


def _grouped(ctx: BackupContext) -> dict[str, list[tuple[str, int]]]:
    """Return {run id: [(object, size)]} of every run under the prefix."""
    grouped: dict[str, list[tuple[str, int]]] = defaultdict(list)
    prefix = ctx.run_prefix()
    for info in ctx.bucket.list(prefix):
        run_id = info.name[len(prefix) :].split("/", 1)[0]
        if RUN_ID.match(run_id):
            grouped[run_id].append((info.name, info.size))
    return grouped


def _read(ctx: BackupContext, run_id: str, objects: list[tuple[str, int]]) -> RunInfo:
    run = RunInfo(run_id, False, [o for o, _ in objects], sum(s for _, s in objects))
    manifest_name = ctx.object_name(run_id, MANIFEST)
    if manifest_name in run.objects:
        try:
            run.manifest = Manifest.from_json(ctx.bucket.read_text(manifest_name), manifest_name)
            run.complete = True
        except (OpsError, UnicodeDecodeError) as exc:
            run.problem = str(exc)
            run.unreadable = True
    else:
        run.problem = "no manifest: the run did not finish"
    return run


def runs(ctx: BackupContext) -> list[RunInfo]:
    """Return every run under the prefix, oldest first.

    A run without a manifest is incomplete; one whose manifest exists but
    cannot be read or parsed is unreadable (and not complete either).
    """
    grouped = _grouped(ctx)
    return [_read(ctx, run_id, grouped[run_id]) for run_id in sorted(grouped, key=run_time)]


def newest(ctx: BackupContext, schedule: str, before: str) -> Manifest | None:
    """Return the manifest of the newest readable run of schedule older than run id before, or None."""
    grouped = _grouped(ctx)
    for run_id in sorted(grouped, key=run_time, reverse=True):
        if run_id != before and run_schedule(run_id) == schedule and run_time(run_id) <= run_time(before):
            run = _read(ctx, run_id, grouped[run_id])
            if run.manifest is not None:
                return run.manifest
    return None


def load(ctx: BackupContext, run_id: str | None = None, source: str | None = None) -> Manifest:
    """Return the manifest of run_id, or of the newest complete run (holding source, if given).

    Raise BackupNotFound if run_id is not a complete backup, or there is none.
    """
    if run_id is not None:
        run_time(run_id)  # a malformed id is named as such
        for run in runs(ctx):
            if run.run_id == run_id:
                if run.manifest is None:
                    raise BackupNotFound(f"backup {run_id} is incomplete ({run.problem}); it cannot be used")
                return run.manifest
        raise BackupNotFound(f"no backup {run_id} in gs://{ctx.bucket.name}/{ctx.run_prefix()}: see `ops backup list`")
    for run in reversed(runs(ctx)):
        if run.manifest is not None and (source is None or run.manifest.select(source)):
            return run.manifest
    what = f" with {source}" if source else ""
    raise BackupNotFound(f"no complete backup{what} in gs://{ctx.bucket.name}/{ctx.run_prefix()}")
