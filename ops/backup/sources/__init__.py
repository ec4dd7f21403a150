"""Backup sources: one module each, sharing one small protocol.

A source module has NAME, SCHEDULE ("daily" or "weekly": which run takes it)
and two functions (types in ``base``):

- ``backup(ctx, emit)``: call ``emit(name, producer, meta)`` once per object
  to store; the producer is a Command (or a Python iterator of bytes) whose
  output is the plain data. emit compresses, encrypts, hashes and uploads it
  as it streams, and returns the manifest Entry.
- ``restore(ctx, entry, into, feed)``: restore one entry ``into`` "scratch"
  (beside the live data, under a new name) or "live"; ``feed(command)``
  streams the entry's plain bytes into command's stdin. Return where it went.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ops.errors import OpsError

NAMES = ("postgres", "qdrant", "volumes", "git", "secrets", "state")
SOURCES: dict[str, ModuleType] = {name: importlib.import_module(f"ops.backup.sources.{name}") for name in NAMES}


def get_source(name: str) -> ModuleType:
    """Return the source module called name. Raise OpsError naming the known ones otherwise."""
    if name not in SOURCES:
        raise OpsError(f"unknown backup source {name!r}: known sources are {', '.join(NAMES)}")
    return SOURCES[name]


def for_schedule(schedule: str) -> list[str]:
    """Return the sources a scheduled run takes (daily: postgres, qdrant, git, secrets, state; weekly: volumes)."""
    return [name for name, module in SOURCES.items() if schedule == module.SCHEDULE]
