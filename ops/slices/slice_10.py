"""Slice 10: Automated backups.

Registered with what it touches; its checks come with backups to GCS (issue: backups)."""

from __future__ import annotations

from ops.slices.base import Check, Target, pending

NUMBER = 10
TITLE = "Automated backups"
REQUIRES: tuple[int, ...] = ()
SERVICES: tuple[str, ...] = ()
FILES: tuple[str, ...] = ("backups/crontab",)
DATABASES: tuple[str, ...] = ()


def verify(target: Target) -> list[Check]:
    return pending("backups to GCS (issue: backups)")
