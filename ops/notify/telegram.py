"""Telegram: a notice becomes one message from the bot of slices 4 and 6 to the alert chat.

The Bot API client is the observer's (ops.events.telegram.TelegramBot):
``sendMessage`` only, which may run beside the observer's getUpdates poller
(only a second poller conflicts). The chat is OPS_ALERT_TELEGRAM_CHAT, else
the first of OPS_TELEGRAM_CHAT_IDS. A text over Telegram's 4,096 characters
is cut (an alert's first lines say what it is).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ops.notify import Notice, NotifyConfig

NAME = "telegram"
LIMIT = 4000  # characters: under the Bot API's 4,096 UTF-16 units for any text without astral characters


def text_of(notice: Notice) -> str:
    """Given a notice, return the message text: its title (unless the text opens with it), then its text, cut to LIMIT."""
    from ops.notify import subject_of

    title = subject_of(notice)
    text = notice.message.strip() if notice.message.startswith(title) else f"{title}\n\n{notice.message}".strip()
    return text if len(text) <= LIMIT else text[: LIMIT - 1] + "…"


def send(notice: Notice, config: NotifyConfig) -> None:
    if config.telegram is None:
        return
    from ops.events.telegram import TelegramBot

    target = config.telegram
    TelegramBot(target.token, (target.chat_id,), target.api).call("sendMessage", chat_id=target.chat_id, text=text_of(notice))
