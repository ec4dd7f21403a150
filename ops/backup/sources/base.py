"""The types a backup source's functions take (see ops.backup.sources for the protocol)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ops.backup.manifest import Entry
from ops.backup.pipeline import Command, Producer


class Emit(Protocol):
    """Store one object: stream producer's plain bytes through the codec into the bucket; return its entry.

    ``deadline`` (a time.monotonic() value) is when the run is stopped; a source
    that waits on something of its own (not a stream) waits no longer than that.
    """

    deadline: float

    def __call__(self, name: str, producer: Producer, meta: dict[str, Any] | None = None) -> Entry: ...


Feed = Callable[[Command], None]  # stream an entry's plain bytes into a command's stdin
