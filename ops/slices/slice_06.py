"""Slice 6: End-to-end test (Telegram -> n8n -> LiteLLM).

Registered with what it touches; its checks come with the Telegram bot."""

from __future__ import annotations

from ops.slices.base import Check, Target, pending

NUMBER = 6
TITLE = "End-to-end test (Telegram -> n8n -> LiteLLM)"
REQUIRES: tuple[int, ...] = (5,)
SERVICES: tuple[str, ...] = ()
FILES: tuple[str, ...] = ()
DATABASES: tuple[str, ...] = ()


def verify(target: Target) -> list[Check]:
    return pending("the Telegram bot")
