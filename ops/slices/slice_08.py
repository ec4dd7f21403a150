"""Slice 8: Observer agent.

Registered with what it touches; its checks come with the observer agent (issue: events)."""

from __future__ import annotations

from ops.slices.base import Check, Target, pending

NUMBER = 8
TITLE = "Observer agent"
REQUIRES: tuple[int, ...] = (7,)
SERVICES: tuple[str, ...] = ()
FILES: tuple[str, ...] = ()
DATABASES: tuple[str, ...] = ()


def verify(target: Target) -> list[Check]:
    return pending("the observer agent (issue: events)")
