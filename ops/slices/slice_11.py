"""Slice 11: Monitoring alerts.

Registered with what it touches; its checks come with alerts."""

from __future__ import annotations

from ops.slices.base import Check, Target, pending

NUMBER = 11
TITLE = "Monitoring alerts"
REQUIRES: tuple[int, ...] = ()
SERVICES: tuple[str, ...] = ()
FILES: tuple[str, ...] = ()
DATABASES: tuple[str, ...] = ()


def verify(target: Target) -> list[Check]:
    return pending("alerts")
