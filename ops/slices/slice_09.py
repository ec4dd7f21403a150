"""Slice 9: Git reconciliation loop.

Registered with what it touches; its checks come with git reconciliation (issue: events)."""

from __future__ import annotations

from ops.slices.base import Check, Target, pending

NUMBER = 9
TITLE = "Git reconciliation loop"
REQUIRES: tuple[int, ...] = (8,)
SERVICES: tuple[str, ...] = ()
FILES: tuple[str, ...] = ()
DATABASES: tuple[str, ...] = ()


def verify(target: Target) -> list[Check]:
    return pending("git reconciliation (issue: events)")
