"""Slice 12: Load testing.

Registered with what it touches; its checks come with the load test."""

from __future__ import annotations

from ops.slices.base import Check, Target, pending

NUMBER = 12
TITLE = "Load testing"
REQUIRES: tuple[int, ...] = (5,)
SERVICES: tuple[str, ...] = ()
FILES: tuple[str, ...] = ()
DATABASES: tuple[str, ...] = ()


def verify(target: Target) -> list[Check]:
    return pending("the load test")
