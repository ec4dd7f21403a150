"""Every image is pinned to an exact version (or a digest)."""

from __future__ import annotations

import re

from ops.doctor import DoctorContext, Finding

NAME = "images"
DESCRIPTION = "every image pinned to an exact version: no latest, no bare major"
_MOVING = {"latest", "stable", "main", "main-stable", "main-latest", "edge", "nightly", "dev"}
# Two numeric parts at least: PostgreSQL 18.6 is an exact release; redis 7 or langfuse 3 moves.
_EXACT = re.compile(r"(?:^|[-_])v?\d+\.\d+")


def problem(image: str) -> str | None:
    """Given an image reference, return why it is not pinned, or None if it is."""
    if "@sha256:" in image:
        return None
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return "has no tag (means latest)"
    if tag.lower() in _MOVING:
        return f"uses the moving tag {tag!r}"
    if not _EXACT.search(tag):
        return f"tag {tag!r} is not an exact version such as 1.2.3 (a bare major moves)"
    return None


def check(ctx: DoctorContext) -> list[Finding]:
    if ctx.stack is None:
        return []
    findings = []
    for service in ctx.stack.services:
        if service.image and (why := problem(service.image)):
            findings.append(Finding(NAME, "error", f"service {service.name!r}: image {service.image!r} {why}"))
    return findings
