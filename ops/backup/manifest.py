"""The manifest of a backup run: what was stored, with sizes and sha256, written last.

A run's objects live under ``<prefix>/<run id>/``; its manifest is
``<prefix>/<run id>/manifest.json``. A run without a manifest is incomplete:
it never counts as a backup (not listed as good, not restorable, pruned).
A run whose manifest names failed sources (or objects the previous
scheduled run had and this one lost) is ``partial``: what it holds is good
and restorable, what failed is not in it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ops.errors import OpsError

FORMAT = 2  # 2 added sources, failed and lost; format 1 manifests are still read
READABLE_FORMATS = (1, 2)
MANIFEST = "manifest.json"
RUN_ID = re.compile(r"^(\d{8}T\d{6}Z)-(daily|weekly|manual|pre-restore)$")


class BackupNotFound(OpsError):
    """No complete backup has that id."""


@dataclass(frozen=True)
class Entry:
    """One stored object: which source made it, its name, object, size and sha256 of the stored bytes."""

    source: str
    name: str
    object: str
    size: int
    sha256: str
    seconds: float
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    run_id: str
    schedule: str
    started_at: str
    finished_at: str = ""
    host: str = ""
    encrypted: bool = False
    recipients: list[str] = field(default_factory=list)
    compression: str = ""
    tools: dict[str, str] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # the sources the run took
    failed: dict[str, str] = field(default_factory=dict)  # source -> why; its objects were removed
    lost: list[str] = field(default_factory=list)  # "<source>/<name>" the previous scheduled run had, this one not
    format: int = FORMAT

    @property
    def created(self) -> datetime:
        return run_time(self.run_id)

    @property
    def status(self) -> str:
        return "partial" if self.failed or self.lost else "complete"

    def held(self) -> set[str]:
        """Return the sources this run holds a good copy of: taken, not failed, with at least one object."""
        return {e.source for e in self.entries if e.source not in self.failed}

    def units(self) -> set[str]:
        """Return "<source>/<name>" of every object held (a database, a collection, a volume, the bundle)."""
        return {f"{e.source}/{e.name}" for e in self.entries if e.source not in self.failed}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        """Parse a manifest. Raise OpsError naming where it came from if it is not one."""
        try:
            raw = json.loads(text)
            if raw.get("format") not in READABLE_FORMATS:
                raise ValueError(f"format {raw.get('format')!r} is not one this ops reads {READABLE_FORMATS}: upgrade ops")
            entries = [Entry(**e) for e in raw.pop("entries")]
            manifest = cls(**raw, entries=entries)
            run_time(manifest.run_id)
            if manifest.format == 1:  # format 1 had no list of sources: what it holds is what it took
                manifest.sources = sorted({e.source for e in entries})
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise OpsError(f"{where} is not a valid backup manifest: {exc}") from exc
        return manifest

    def select(self, source: str | None = None, name: str | None = None) -> list[Entry]:
        return [e for e in self.entries if (source is None or e.source == source) and (name is None or e.name == name)]


def new_run_id(schedule: str, now: datetime | None = None) -> str:
    return f"{(now or datetime.now(UTC)).strftime('%Y%m%dT%H%M%SZ')}-{schedule}"


def run_time(run_id: str) -> datetime:
    """Return when run_id started. Raise BackupNotFound if it is not a run id."""
    match = RUN_ID.match(run_id)
    if not match:
        raise BackupNotFound(f"{run_id!r} is not a backup id (like 20261122T020000Z-daily): see `ops backup list`")
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def run_schedule(run_id: str) -> str:
    run_time(run_id)
    return run_id.rsplit("-", 1)[1] if not run_id.endswith("pre-restore") else "pre-restore"
