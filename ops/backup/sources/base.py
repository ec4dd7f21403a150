"""The types a backup source's functions take (see ops.backup.sources for the protocol)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ops.backup.manifest import Entry
from ops.backup.pipeline import Command, Producer


class Emit(Protocol):
    """Store one object: stream producer's plain bytes through the codec into the bucket; return its entry."""

    def __call__(self, name: str, producer: Producer, meta: dict[str, Any] | None = None) -> Entry: ...


Feed = Callable[[Command], None]  # stream an entry's plain bytes into a command's stdin
