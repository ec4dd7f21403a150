"""Slice 7: Event schema + Redis Streams.

Registered with what it touches; its checks come with event sourcing on Redis Streams (issue: events)."""

from __future__ import annotations

from ops.slices.base import Check, Target, pending

NUMBER = 7
TITLE = "Event schema + Redis Streams"
REQUIRES: tuple[int, ...] = ()
SERVICES: tuple[str, ...] = ("redis",)
FILES: tuple[str, ...] = ()
DATABASES: tuple[str, ...] = ()


def verify(target: Target) -> list[Check]:
    return pending("event sourcing on Redis Streams (issue: events)")
