"""Logging for the long-running observer: quiet HTTP clients, and no secret in any record.

The Telegram Bot API puts the bot token in every URL (``/bot<token>/getUpdates``),
and httpx logs every request URL at INFO: polled once a second, the token
would be written to the container log once a second. ``configure_logging``
sets httpx and httpcore to WARNING and puts ``RedactSecrets`` on the root
handlers; ``protect`` (called by the bot itself) puts it on the HTTP
clients' loggers, so their records are redacted where they are made, before
any handler (even one added later, at DEBUG) sees them.
"""

from __future__ import annotations

import logging
import re
from typing import IO

TELEGRAM_TOKEN = re.compile(r"\bbot\d+:[A-Za-z0-9_-]+")  # Bot API URLs: https://api.telegram.org/bot<id>:<secret>/method
REDACTED = "bot<redacted>"
HTTP_LOGGERS = ("httpx", "httpcore")
FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def redact(text: str) -> str:
    """Given text, return it with every Telegram bot token replaced."""
    return TELEGRAM_TOKEN.sub(REDACTED, text)


class RedactSecrets(logging.Filter):
    """Rewrite a record whose message (or traceback) holds a secret; never drop a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def _add_once(target: logging.Logger | logging.Handler) -> None:
    if not any(isinstance(f, RedactSecrets) for f in target.filters):
        target.addFilter(RedactSecrets())


def protect(names: tuple[str, ...] = HTTP_LOGGERS) -> None:
    """Redact secrets in every record the named loggers make, whatever their level."""
    for name in names:
        _add_once(logging.getLogger(name))


def configure_logging(level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Log at level to stream (stderr), HTTP clients at WARNING only, every record redacted."""
    logging.basicConfig(level=level, format=FORMAT, stream=stream)
    for name in HTTP_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        _add_once(handler)
    protect()
