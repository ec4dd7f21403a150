"""``ops backup verify``: download every object of a backup, check size and sha256, and decode it.

Without the age identity an encrypted backup is checked by size and sha256
only (which catches corruption and truncation); with it, every object is
also decrypted and decompressed to the end (zstd checks its own frame
checksums), which proves it restores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ops.backup import catalog
from ops.backup.context import BackupContext
from ops.backup.manifest import Entry
from ops.backup.pipeline import PipelineError, stream
from ops.errors import OpsError


@dataclass
class ObjectCheck:
    object: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"object": self.object, "ok": self.ok, "detail": self.detail}


@dataclass
class VerifyReport:
    run_id: str
    decoded: bool
    checks: list[ObjectCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.run_id, "ok": self.ok, "decoded": self.decoded, "objects": [c.to_dict() for c in self.checks]}


class Corrupted(OpsError):
    """A stored object differs from what its manifest recorded."""


def checked_download(ctx: BackupContext, entry: Entry) -> Callable[[], Iterable[bytes]]:
    """Return a producer of entry's stored bytes that raises Corrupted at the end if size or sha256 differ."""

    def produce() -> Iterator[bytes]:
        digest, size = hashlib.sha256(), 0
        for chunk in ctx.bucket.read(entry.object):
            digest.update(chunk)
            size += len(chunk)
            yield chunk
        if size != entry.size or digest.hexdigest() != entry.sha256:
            raise Corrupted(
                f"{entry.object}: {size} bytes with sha256 {digest.hexdigest()[:16]}..., "
                f"the manifest says {entry.size} bytes with sha256 {entry.sha256[:16]}..."
            )

    return produce


def run_verify(ctx: BackupContext, run_id: str | None = None, deadline: float | None = None) -> VerifyReport:
    """Given a backup id (default: the newest complete one), check every object; return the report.

    An object still decoding at deadline (a time.monotonic() value) is killed and reported as a failed check.
    Raise BackupNotFound if there is no such complete backup.
    """
    manifest = catalog.load(ctx, run_id)
    decode = not manifest.encrypted or ctx.codec.identity is not None
    report = VerifyReport(manifest.run_id, decode)
    for entry in manifest.entries:
        produce = checked_download(ctx, entry)
        try:
            if decode:
                plain = stream(produce, ctx.codec.decode(manifest.encrypted), deadline=deadline)
                detail = f"sha256 ok, decodes to {plain.size} bytes"
            else:
                for _ in produce():
                    pass
                detail = "sha256 ok (encrypted: set OPS_BACKUP_AGE_IDENTITY to decode too)"
            report.checks.append(ObjectCheck(entry.object, True, detail))
        except (PipelineError, Corrupted, OpsError) as exc:
            report.checks.append(ObjectCheck(entry.object, False, str(exc)))
    return report
