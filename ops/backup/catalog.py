"""What the bucket holds: complete runs (with a manifest) and incomplete ones (objects but no manifest)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ops.backup.context import BackupContext
from ops.backup.manifest import MANIFEST, RUN_ID, BackupNotFound, Manifest, run_time
from ops.errors import OpsError


@dataclass
class RunInfo:
    run_id: str
    complete: bool
    objects: list[str] = field(default_factory=list)
    size: int = 0
    manifest: Manifest | None = None
    problem: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.run_id,
            "complete": self.complete,
            "objects": len(self.objects),
            "size": self.size,
            "sources": sorted({e.source for e in self.manifest.entries}) if self.manifest else [],
            "encrypted": bool(self.manifest and self.manifest.encrypted),
            "problem": self.problem,
        }


def runs(ctx: BackupContext) -> list[RunInfo]:
    """Return every run under the prefix, oldest first; a run whose manifest is missing or unreadable is incomplete."""
    grouped: dict[str, list[tuple[str, int]]] = defaultdict(list)
    prefix = ctx.run_prefix()
    for info in ctx.bucket.list(prefix):
        run_id = info.name[len(prefix) :].split("/", 1)[0]
        if RUN_ID.match(run_id):
            grouped[run_id].append((info.name, info.size))
    found = []
    for run_id in sorted(grouped, key=run_time):
        objects = grouped[run_id]
        run = RunInfo(run_id, False, [o for o, _ in objects], sum(s for _, s in objects))
        manifest_name = ctx.object_name(run_id, MANIFEST)
        if manifest_name in run.objects:
            try:
                run.manifest = Manifest.from_json(ctx.bucket.read_text(manifest_name), manifest_name)
                run.complete = True
            except OpsError as exc:
                run.problem = str(exc)
        else:
            run.problem = "no manifest: the run did not finish"
        found.append(run)
    return found


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
