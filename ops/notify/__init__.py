"""Notifiers: one module each, sharing one protocol, called when a job succeeds or fails, or an alert fires.

A notifier module has NAME and ``send(notice, config) -> None``: ``log``
(always: one line in the ops log), ``ping`` (a dead-man's-switch URL: a
success pings it, a failure pings ``<url>/fail``, healthchecks.io's
convention; a missed ping raises the alarm there), ``email`` (SMTP with
STARTTLS) and ``telegram`` (the bot of slices 4 and 6). Each sends only what
its part of NotifyConfig configures: the backup jobs pass the ping URL
alone, so they notify the log and the ping as before; ``ops alerts check``
passes e-mail and Telegram (docs/ALERTS.md). A notifier that fails is logged
and never hides the job's own outcome.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from types import ModuleType

from ops.config import Settings, SmtpSettings, TelegramAlertSettings

logger = logging.getLogger("ops.notify")  # not `log`: the log notifier module takes that name here

NAMES = ("log", "ping", "email", "telegram")
NOTIFIERS: dict[str, ModuleType] = {name: importlib.import_module(f"ops.notify.{name}") for name in NAMES}


@dataclass(frozen=True)
class Notice:
    job: str  # "backup", "prune", "drill", "alert", ...
    ok: bool
    message: str
    subject: str = ""  # a one-line title (an e-mail's subject); empty: made from job and ok


@dataclass(frozen=True)
class NotifyConfig:
    ping_url: str = ""
    email: SmtpSettings | None = None
    telegram: TelegramAlertSettings | None = None

    def configured(self) -> tuple[str, ...]:
        """Return the notifiers this configuration sends through (the log always)."""
        on = {"log": True, "ping": bool(self.ping_url), "email": self.email is not None, "telegram": self.telegram is not None}
        return tuple(name for name in NAMES if on[name])


def alert_config(settings: Settings) -> NotifyConfig:
    """Given Settings, return the notifiers alerts go through: e-mail and Telegram as configured (no ping).

    Raise ConfigError naming a malformed variable.
    """
    return NotifyConfig(email=settings.smtp, telegram=settings.alert_telegram)


def subject_of(notice: Notice) -> str:
    """Given a notice, return its one-line title."""
    return notice.subject or f"{notice.job} {'ok' if notice.ok else 'FAILED'}: {notice.message.splitlines()[0][:120]}"


def send(name: str, config: NotifyConfig, notice: Notice) -> None:
    """Send notice through the notifier called name. Raise what it raises (OpsError naming the service, mostly)."""
    NOTIFIERS[name].send(notice, config)


def notify(config: NotifyConfig, notice: Notice) -> list[str]:
    """Send notice through every notifier; return the problems of those that failed (never raise)."""
    problems = []
    for name in NOTIFIERS:
        try:
            send(name, config, notice)
        except Exception as exc:
            problems.append(f"notifier {name}: {exc}")
            logger.warning("notifier %s failed: %s", name, exc)
    return problems
