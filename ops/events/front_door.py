"""The Telegram front door: a question typed in an allowed chat goes to n8n's routing webhook; the answer comes back.

The observer owns the bot's updates (one getUpdates poller per token:
Telegram answers a second one 409 Conflict); ops.events.telegram hands each
text message that is not a decision to ``FrontDoor.ask``. The answer is made
in a small thread pool (WORKERS threads, QUEUED more waiting), so a slow model
never stalls approvals or the event consumer; each webhook call is bounded by
ANSWER_SECONDS. The reply quotes the question (reply_parameters), ends with a
footer naming the model group, the deployment that served it and the reason,
and is split at Telegram's 4,096-character limit. Every failure (n8n's 4xx,
its 502 when every model failed, a timeout) becomes a one-line reply; the
update was confirmed before it was handed over, so nothing is replayed.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from ops.errors import ServiceError

log = logging.getLogger("ops.telegram")

# sendMessage: "Text of the message to be sent, 1-4096 characters after entities parsing"
# (source: core.telegram.org/bots/api#sendmessage); Telegram measures text in UTF-16 code units
# ("UTF-16 is used when computing the length and offsets of entities in the MTProto and bot APIs",
# source: core.telegram.org/api/entities). Counting UTF-16 units is never less than counting
# characters, so a part within it is within the limit either way.
TELEGRAM_LIMIT = 4096
MAX_PARTS = 10  # an answer longer than this many messages is cut, saying so (Telegram rate-limits bursts)
ANSWER_SECONDS = 120.0  # one webhook call; n8n's own call to the gateway may take longer, the chat should not
WORKERS = 2
QUEUED = 6  # questions waiting for a worker; beyond that the chat is told to wait
ONE_LINE = 300


def utf16_len(text: str) -> int:
    """Given text, return its length in UTF-16 code units (a character outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, limit: int) -> int:
    """Return how many characters of text fit in limit UTF-16 code units (never half a surrogate pair)."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def split_message(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Given text, return it as parts of at most limit UTF-16 code units, cut at line breaks where possible.

    A line longer than limit is cut at the limit. The line breaks a cut falls on are dropped; parts that
    would be empty or blank (Telegram refuses them) are left out.
    """
    parts: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        fit = _fit(rest, limit)
        newline = rest.rfind("\n", 0, fit + 1)  # a break right after the fitting text still ends a part
        if newline >= 0:
            head, rest = rest[:newline], rest[newline + 1 :].lstrip("\n")
        else:
            head, rest = rest[:fit], rest[fit:]
        if head.strip():
            parts.append(head)
    if rest.strip():
        parts.append(rest)
    return parts


def one_line(text: str, limit: int = ONE_LINE) -> str:
    """Given any text, return it on one line of at most limit characters."""
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class Answer:
    """The routing webhook's answer (workflows/litellm-router.json, node "Format answer")."""

    text: str
    model: str
    served_by: str
    reason: str
    latency_ms: int
    trace_id: str

    def footer(self) -> str:
        served = f" (served by {self.served_by})" if self.served_by and self.served_by != self.model else ""
        took = f"{self.latency_ms} ms" if self.latency_ms < 1000 else f"{self.latency_ms / 1000:.1f} s"
        return f"— {self.model}{served}: {self.reason} · {took}"


def reply_parts(answer: Answer, limit: int = TELEGRAM_LIMIT, max_parts: int = MAX_PARTS) -> list[str]:
    """Given an answer, return the messages that carry it: the text, then the footer, split at limit."""
    body = answer.text.strip() or "(the model answered with nothing)"
    parts = split_message(f"{body}\n\n{answer.footer()}", limit)
    if len(parts) <= max_parts:
        return parts
    cut = sum(len(p) for p in parts[max_parts - 1 :])
    note = f"(answer cut: {cut:,} more characters; trace {answer.trace_id} in Langfuse has it all)\n{answer.footer()}"
    return [*parts[: max_parts - 1], *split_message(note, limit)]


class WebhookFailed(ServiceError):
    """The routing webhook gave no answer; the message is one line fit for the chat."""


class RouterWebhook:
    """n8n's routing webhook as a client: POST {task} with the X-Webhook-Key header, read the JSON answer."""

    def __init__(self, url: str, key: str, timeout: float = ANSWER_SECONDS) -> None:
        from ops.workflows.router import WEBHOOK_HEADER, WEBHOOK_PATH

        self.url = f"{url.rstrip('/')}/webhook/{WEBHOOK_PATH}"
        self.timeout = timeout
        self._http = httpx.Client(timeout=timeout, headers={WEBHOOK_HEADER: key})  # shared by the workers

    def ask(self, task: str) -> Answer:
        """Given a task, return n8n's answer. Raise WebhookFailed with one line saying why there is none."""
        try:
            response = self._http.post(self.url, json={"task": task})
        except httpx.TimeoutException:
            raise WebhookFailed(f"the model took over {self.timeout:.0f} s; try again later, or ask something shorter") from None
        except httpx.HTTPError as exc:
            raise WebhookFailed(f"n8n is unreachable: {one_line(str(exc)) or type(exc).__name__}") from None
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        error = one_line(str(body.get("error") or "")) if isinstance(body, dict) else ""
        status = response.status_code
        if status in (401, 403):
            raise WebhookFailed("n8n refused the webhook key: N8N_WEBHOOK_SECRET is not the one slice 4 gave n8n")
        if status == 404:
            raise WebhookFailed("n8n has no active routing workflow at /webhook/litellm-route: run `make slice-4`")
        if status >= 400 or not isinstance(body, dict) or not isinstance(body.get("answer"), str):
            detail = error or one_line(response.text, 200) or "no body"
            raise WebhookFailed(f"n8n answered {status}: {detail}")
        return Answer(
            text=body["answer"],
            model=str(body.get("model") or "?"),
            served_by=str(body.get("served_by") or ""),
            reason=str(body.get("reason") or ""),
            latency_ms=int(body["latency_ms"]) if isinstance(body.get("latency_ms"), int | float) else 0,
            trace_id=str(body.get("trace_id") or ""),
        )


@dataclass
class Outcome:
    """What became of one question: the messages sent (their ids), the answer or the error, the seconds taken."""

    chat: int
    sent: list[int] = field(default_factory=list)
    answer: Answer | None = None
    error: str = ""
    seconds: float = 0.0


Send = Callable[..., Any]  # TelegramBot.call: (method, **params) -> result


class FrontDoor:
    """Questions from allowed chats, answered by the routing webhook in a bounded thread pool."""

    def __init__(self, webhook: RouterWebhook | None, send: Send, workers: int = WORKERS, queued: int = QUEUED) -> None:
        self.webhook = webhook
        self._send = send
        self._capacity = workers + queued
        self._busy = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="telegram-answer")

    def ask(
        self, chat: int, message_id: int | None, text: str, done: Callable[[Outcome], None] | None = None, prefix: str = ""
    ) -> str:
        """Answer text in chat (a reply to message_id, if any) in the background; return what was done.

        done gets the Outcome when the answer is sent (or failed); prefix opens the reply. A full pool or
        a front door without a webhook is answered at once, in one line.
        """
        if self.webhook is None:
            note = "The LLM front door is off: set N8N_WEBHOOK_SECRET and N8N_DOMAIN (or OPS_N8N_URL) in vps.env."
            self._finish(Outcome(chat, error=note), message_id, done, [note])
            return f"chat {chat}: front door off"
        with self._lock:
            full = self._busy >= self._capacity
            if not full:
                self._busy += 1
        if full:
            note = f"Busy: answering {self._capacity} question(s) already; send it again in a minute."
            self._finish(Outcome(chat, error=note), message_id, done, [note])
            return f"chat {chat}: busy, question refused"
        self._pool.submit(self._answer, chat, message_id, text, done, prefix)
        return f"chat {chat}: question queued"

    def _answer(self, chat: int, message_id: int | None, text: str, done: Callable[[Outcome], None] | None, prefix: str) -> None:
        started = time.monotonic()
        outcome = Outcome(chat)
        webhook = self.webhook
        try:
            if webhook is None:  # ask() answers at once without one; never queued
                raise WebhookFailed("the LLM front door is off")
            outcome.answer = webhook.ask(text)
            parts = reply_parts(outcome.answer)
        except WebhookFailed as exc:
            outcome.error = str(exc)
            log.warning("telegram: no answer for chat %s: %s", chat, exc)
            parts = [f"No answer: {exc}"]
        except Exception as exc:  # a bug here must cost one answer, not the worker
            outcome.error = f"{type(exc).__name__}: {exc}"
            log.exception("telegram: answering chat %s failed", chat)
            parts = [f"No answer: an internal error ({type(exc).__name__}); the observer's log has it."]
        if prefix:
            parts = split_message(f"{prefix}\n\n{parts[0]}") + parts[1:]
        try:
            self._finish(outcome, message_id, None, parts)
        finally:
            outcome.seconds = time.monotonic() - started
            with self._lock:
                self._busy -= 1
            if done is not None:
                done(outcome)

    def reply(self, chat: int, message_id: int | None, parts: list[str], done: Callable[[Outcome], None] | None = None) -> None:
        """Send parts to chat at once (replies to message_id, if any); done gets the Outcome."""
        self._finish(Outcome(chat), message_id, done, parts)

    def _finish(self, outcome: Outcome, message_id: int | None, done: Callable[[Outcome], None] | None, parts: list[str]) -> None:
        """Send parts to the outcome's chat (replies to message_id); a failure is the outcome's error, logged."""
        reply = {"reply_parameters": {"message_id": message_id, "allow_sending_without_reply": True}} if message_id else {}
        try:
            for part in parts:
                sent = self._send("sendMessage", chat_id=outcome.chat, text=part, **reply)
                outcome.sent.append(int(sent.get("message_id", 0)) if isinstance(sent, dict) else 0)
        except Exception as exc:  # Telegram down or refusing: this answer is lost, never the observer
            outcome.error = outcome.error or f"sending the reply failed: {exc}"
            log.warning("telegram: could not reply to chat %s: %s", outcome.chat, exc)
        if done is not None:
            done(outcome)
