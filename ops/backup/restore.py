"""``ops backup restore``: put a backup back, beside the live data (scratch, the default) or over it (live).

A live restore first verifies the backup, then takes a ``pre-restore``
backup of what it is about to replace, so a restore never loses data that
was not saved. Every object is streamed from the bucket through age and
zstd into the restoring program; a corrupted object fails the restore (and
pg_restore's single transaction keeps the database as it was).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ops.backup import catalog
from ops.backup.context import BackupContext
from ops.backup.manifest import Entry, Manifest
from ops.backup.pipeline import Command, PipelineError, stream
from ops.backup.run import run_backup
from ops.backup.sources import get_source
from ops.backup.verify import checked_download, run_verify
from ops.errors import ConfigError, OpsError

INTO = ("scratch", "live")


@dataclass
class RestoreReport:
    run_id: str
    into: str
    restored: list[str] = field(default_factory=list)
    safety_backup: str = ""
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.run_id,
            "into": self.into,
            "restored": self.restored,
            "safety_backup": self.safety_backup,
            "dry_run": self.dry_run,
        }


def feeder(ctx: BackupContext, manifest: Manifest, entry: Entry, deadline: float | None = None) -> Any:
    """Return feed(command): stream entry's plain bytes into command, checking the stored sha256.

    A stream still running at deadline (a time.monotonic() value) is killed.
    """

    def feed(consumer: Command) -> None:
        try:
            stream(checked_download(ctx, entry), [*ctx.codec.decode(manifest.encrypted), consumer], deadline=deadline)
        except PipelineError as exc:
            if "no identity matched" in str(exc):
                raise ConfigError(
                    f"the age identity {ctx.codec.identity} cannot decrypt backup {manifest.run_id}: it was "
                    f"encrypted to {', '.join(manifest.recipients)}; use the identity of one of those"
                ) from exc
            raise

    return feed


def select(manifest: Manifest, source: str | None, name: str | None) -> list[Entry]:
    """Return the entries to restore. Raise OpsError naming what the backup holds when nothing matches."""
    if source is not None:
        get_source(source)
    entries = manifest.select(source, name)
    if not entries:
        held = ", ".join(f"{e.source}/{e.name}" for e in manifest.entries) or "nothing"
        raise OpsError(f"backup {manifest.run_id} has no {source or ''}{'/' + name if name else ''}: it holds {held}")
    return entries


def run_restore(
    ctx: BackupContext,
    run_id: str,
    source: str | None = None,
    name: str | None = None,
    into: str = "scratch",
    dry_run: bool = False,
) -> RestoreReport:
    """Given a backup id, restore its entries (all, or one source, or one object name) into scratch or live.

    Raise BackupNotFound for an unknown or incomplete id, OpsError if nothing
    matches or the backup fails verification, ConfigError if it is encrypted
    and no identity is set.
    """
    if into not in INTO:
        raise OpsError(f"--into must be one of {', '.join(INTO)}, got {into!r}")
    deadline = time.monotonic() + ctx.deadline_seconds
    manifest = catalog.load(ctx, run_id)
    entries = select(manifest, source, name)
    ctx.codec.decode(manifest.encrypted)  # no identity for an encrypted backup: say so before touching anything
    report = RestoreReport(manifest.run_id, into, dry_run=dry_run)
    if dry_run:
        report.restored = [f"would restore {e.source}/{e.name} into {into}" for e in entries]
        return report
    if into == "live":
        verified = run_verify(ctx, manifest.run_id, deadline)
        if not verified.ok:
            bad = "; ".join(c.detail for c in verified.checks if not c.ok)
            raise OpsError(f"backup {manifest.run_id} fails verification, nothing restored: {bad}")
        sources = sorted({e.source for e in entries if e.source != "git"})
        if sources:
            report.safety_backup = run_backup(ctx, "pre-restore", sources).run_id
    for entry in entries:
        module = get_source(entry.source)
        try:
            report.restored.append(module.restore(ctx, entry, into, feeder(ctx, manifest, entry, deadline)))
        except OpsError as exc:
            if not report.safety_backup:
                raise
            raise type(exc)(f"{exc}; what was there before is in the safety backup {report.safety_backup}") from exc
    return report
