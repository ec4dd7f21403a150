"""Slice 4: n8n routing workflow.

Registered with what it touches; its checks come with the n8n routing workflow (workflows/litellm-router.json)."""

from __future__ import annotations

from ops.slices.base import Check, Target, pending

NUMBER = 4
TITLE = "n8n routing workflow"
REQUIRES: tuple[int, ...] = (3,)
SERVICES: tuple[str, ...] = ("n8n",)
FILES: tuple[str, ...] = ("workflows/litellm-router.json",)
DATABASES: tuple[str, ...] = ("n8n",)


def verify(target: Target) -> list[Check]:
    return pending("the n8n routing workflow (workflows/litellm-router.json)")
