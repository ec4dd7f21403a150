"""Notifiers: one module each, sharing one protocol, called when a job succeeds or fails, or an alert fires.

A notifier module has NAME and ``send(notice, config)``: it raises when the
notice did not go, and may return problems when it went only in part (an
e-mail some recipients did not get). ``log``
(always: one line in the ops log), ``ping`` (a dead-man's-switch URL: a
success pings it, a failure pings ``<url>/fail``, healthchecks.io's
convention; a missed ping raises the alarm there), ``email`` (SMTP with
STARTTLS) and ``telegram`` (the bot of slices 4 and 6). Each sends only what
its part of NotifyConfig configures: the backup jobs pass the ping URL
alone, so they notify the log and the ping as before; ``ops alerts check``
passes e-mail and Telegram (docs/ALERTS.md). A notifier that fails is logged
and never hides the job's own outcome. PermanentNotifyError: a refusal that
sending again cannot change (an outbox drops the notice).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from types import ModuleType

from ops.config import SmtpSettings, TelegramAlertSettings
from ops.notify.errors import PermanentNotifyError

logger = logging.getLogger("ops.notify")  # not `log`: the log notifier module takes that name here

NAMES = ("log", "ping", "email", "telegram")
__all__ = ["NAMES", "NOTIFIERS", "Notice", "NotifyConfig", "PermanentNotifyError", "dispatch", "notify", "send", "subject_of"]
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


def subject_of(notice: Notice) -> str:
    """Given a notice, return its one-line title."""
    return notice.subject or f"{notice.job} {'ok' if notice.ok else 'FAILED'}: {notice.message.splitlines()[0][:120]}"


def dispatch(name: str, config: NotifyConfig, notice: Notice) -> list[str]:
    """Send notice through the notifier called name; return the problems of a notice that went only in part (an
    e-mail some recipients of OPS_SMTP_TO did not get): it counts as sent, never to be sent again.

    Raise what the notifier raises: PermanentNotifyError if the service refused this notice for good (drop it),
    another OpsError naming the service if it may go later.
    """
    return list(NOTIFIERS[name].send(notice, config) or [])


def send(name: str, config: NotifyConfig, notice: Notice) -> None:
    """Send notice through the notifier called name, logging (as warnings) the problems dispatch returns.

    Raise what dispatch raises.
    """
    for problem in dispatch(name, config, notice):
        logger.warning("notifier %s: %s", name, problem)


def notify(config: NotifyConfig, notice: Notice) -> list[str]:
    """Send notice through every notifier; return the problems of those that failed or went in part (never raise)."""
    problems = []
    for name in NOTIFIERS:
        try:
            for problem in dispatch(name, config, notice):
                problems.append(f"notifier {name}: {problem}")
                logger.warning("notifier %s: %s", name, problem)
        except Exception as exc:
            problems.append(f"notifier {name}: {exc}")
            logger.warning("notifier %s failed: %s", name, exc)
    return problems
