"""Notifiers: one module each, sharing one protocol, called when a job succeeds or fails.

A notifier module has NAME and ``send(notice, config) -> None``. Today: ``log``
(always: one line in the ops log) and ``ping`` (a dead-man's-switch URL: a
success pings it, a failure pings ``<url>/fail``, healthchecks.io's
convention; a missed ping raises the alarm there). The alerts work adds
Telegram and e-mail here. A notifier that fails is logged and never hides
the job's own outcome.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from types import ModuleType

logger = logging.getLogger("ops.notify")  # not `log`: the log notifier module takes that name here

NAMES = ("log", "ping")
NOTIFIERS: dict[str, ModuleType] = {name: importlib.import_module(f"ops.notify.{name}") for name in NAMES}


@dataclass(frozen=True)
class Notice:
    job: str  # "backup", "prune", "drill", ...
    ok: bool
    message: str


@dataclass(frozen=True)
class NotifyConfig:
    ping_url: str = ""


def notify(config: NotifyConfig, notice: Notice) -> list[str]:
    """Send notice through every notifier; return the problems of those that failed (never raise)."""
    problems = []
    for name, module in NOTIFIERS.items():
        try:
            module.send(notice, config)
        except Exception as exc:
            problems.append(f"notifier {name}: {exc}")
            logger.warning("notifier %s failed: %s", name, exc)
    return problems
