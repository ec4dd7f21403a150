"""The Telegram bot: change requests with Approve / Reject buttons, and the LLM front door.

One owner of the bot's updates: the observer's poll calls ``poll_decisions``,
the only getUpdates poller of the token (a second one gets 409 Conflict).
Each update is dispatched (``classify``): a button press or ``/approve ID`` /
``/reject ID`` decides a change request; ``/start`` or ``/help`` gets the
help text; any other text is a question for the LLM, answered through n8n's
routing webhook by ops.events.front_door. All of that counts only from a chat
in OPS_TELEGRAM_CHAT_IDS: a stranger's button press is told no, anything else
a stranger sends gets nothing (and no webhook call), logged with its chat id.

The Bot API is called directly over HTTPS (sendMessage, getUpdates,
answerCallbackQuery): aiogram 3 needs pydantic < 2.14 and LiteLLM pins a
newer one; python-telegram-bot 22 fits the pins but is asyncio only, and
its polling loop would be a second owner of the updates next to the
observer's synchronous loop (docs/TELEGRAM.md). The update offset lives in
Redis, so a restart neither replays nor skips; an update is confirmed before
it is handled, so one that fails is never replayed either. The token is in
every URL: the bot redacts it from the HTTP client's log records
(ops.events.logs) and from its own errors.

``ops slice 6`` checks the front door without a human typing: it pushes a
probe (a question for the first allowed chat) onto the Redis list beside the
offset; the poller takes it as if Telegram had delivered it, and writes the
outcome back for the check to read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import httpx
import redis

from ops.errors import OpsError, ServiceError
from ops.events.changes import AlreadyDecided
from ops.events.front_door import FrontDoor, Outcome, RouterWebhook
from ops.events.logs import protect, redact

if TYPE_CHECKING:
    from ops.events.changes import ChangeRequest, ChangeStore
    from ops.events.context import EventsConfig

API = "https://api.telegram.org"
log = logging.getLogger("ops.telegram")
HELP = (
    "Ask me anything: your message goes to the LLM router (n8n -> LiteLLM) and the answer comes back here, "
    "with the model that answered and why.\n/approve ID and /reject ID decide a held change request "
    "(or press its buttons)."
)
NOT_TEXT = "I answer text messages only."
PROBE_TTL = 600  # seconds a probe and its outcome are kept in Redis
PROBE_MAX_AGE = 60  # a probe older than this is dropped unanswered: its check gave up
POLLED_TTL = 30  # seconds the time of the last successful getUpdates is kept: older, and polling has stopped
Kind = Literal["decision", "help", "question", "not-text", "stranger", "other"]
DECISION_COMMANDS = ("approve", "reject")


def command(text: str) -> tuple[str, str]:
    """Given a message's text, return (command, argument): ("approve", "ID") for "/approve@MyBot ID", ("", text) for
    text that is no command."""
    if not text.startswith("/"):
        return "", text
    head, _, rest = text[1:].partition(" ")
    return head.split("@", 1)[0].lower(), rest.strip()


def classify(update: dict[str, Any], chats: tuple[int, ...]) -> Kind:
    """Given a Telegram update and the allowed chats, return what the bot does with it.

    "decision": a button press, or /approve or /reject (from any chat: a stranger is told no); from an allowed
    chat, "help" for /start and /help, "question" for any other text, "not-text" for a message without text;
    "stranger" for a message from any other chat; "other" for any other update.
    """
    if update.get("callback_query"):
        return "decision"
    message = update.get("message")
    if not isinstance(message, dict):
        return "other"
    text = message.get("text")
    verb, _ = command(text) if isinstance(text, str) else ("", "")
    if verb in DECISION_COMMANDS:
        return "decision"
    if message.get("chat", {}).get("id") not in chats:
        return "stranger"
    if not isinstance(text, str) or not text.strip():
        return "not-text"
    return "help" if verb in ("start", "help") else "question"


def offset_key(stream: str) -> str:
    """Given the event stream's name, return the Redis key of the bot's update offset (the probes' keys sit beside it)."""
    return f"{stream}:telegram:offset"


def probe_keys(offset_key: str) -> tuple[str, str, str]:
    """Given the update offset's key, return (the probes' list, their outcomes' key prefix, the last poll's key)."""
    base = offset_key.removesuffix(":offset")
    return f"{base}:probes", f"{base}:probe:", f"{base}:polled"


def send_probe(client: redis.Redis, offset_key: str, chat: int, text: str) -> str:
    """Leave a question for chat where the bot's poller takes it, as if typed there; return the probe's id."""
    probes, _, _ = probe_keys(offset_key)
    ident = uuid.uuid4().hex[:12]
    client.rpush(probes, json.dumps({"id": ident, "chat_id": chat, "text": text, "at": time.time()}))
    client.expire(probes, PROBE_TTL)
    return ident


def wait_for_probe(client: redis.Redis, offset_key: str, ident: str, within: float) -> dict[str, Any] | None:
    """Poll for probe ident's outcome (front_door.Outcome as a dict); return it, or None after within seconds."""
    _, outcomes, _ = probe_keys(offset_key)
    deadline = time.monotonic() + within
    while True:
        raw = client.get(f"{outcomes}{ident}")
        if raw:
            outcome: dict[str, Any] = json.loads(raw)
            return outcome
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def last_poll(client: redis.Redis, offset_key: str) -> str | None:
    """Return when the bot's getUpdates last succeeded (ISO time), or None if not within POLLED_TTL seconds."""
    raw = client.get(probe_keys(offset_key)[2])
    return str(raw) if raw else None


def button_ref(cr_id: str) -> str:
    """A short stand-in for a change request id: callback data holds at most 64 bytes."""
    return hashlib.sha256(cr_id.encode()).hexdigest()[:20]


class TelegramBot:
    def __init__(
        self, token: str, chats: tuple[int, ...], api: str = "", timeout: float = 10, webhook: RouterWebhook | None = None
    ) -> None:
        if not token:
            raise OpsError("OPS_TELEGRAM_BOT_TOKEN is empty")
        self.chats = chats
        self._base = f"{(api or API).rstrip('/')}/bot{token}"
        protect()  # httpx logs each request's URL, token included: redact it wherever logging is configured
        # one client for the poller and the answering threads: httpx's Client "can be shared between
        # threads" (source: encode/httpx pull request 2380, the Client docstring)
        self._http = httpx.Client(timeout=timeout)
        self.front_door = FrontDoor(webhook, self.call)

    def call(self, method: str, **params: Any) -> Any:
        """Call a Bot API method; return its result. Raise ServiceError with Telegram's description on failure."""
        try:
            response = self._http.post(f"{self._base}/{method}", json=params)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ServiceError(f"Telegram {method} failed: {redact(str(exc))}") from None
        if not body.get("ok"):
            raise ServiceError(f"Telegram {method} refused: {body.get('error_code')} {body.get('description')}")
        return body["result"]

    def notify_pending(self, cr: ChangeRequest) -> None:
        payload = cr.event["payload"]
        text = (
            f"Change request {cr.id}\n{payload['action']} {payload['resource']}\n"
            f"{cr.event['aggregate_id']} v{cr.event['version']} by {cr.event['agent']['agent_id']}\n"
            f"{'Held' if cr.status == 'pending' else cr.status.capitalize()}: {cr.reason}\nWhy: {payload['reasoning'][:500]}"
        )
        ref = button_ref(cr.id)
        keyboard = [
            [{"text": "Approve", "callback_data": f"approve:{ref}"}, {"text": "Reject", "callback_data": f"reject:{ref}"}]
        ]
        for chat in self.chats:
            self.call("sendMessage", chat_id=chat, text=text, reply_markup={"inline_keyboard": keyboard})

    def poll_decisions(self, store: ChangeStore, offset_key: str) -> list[str]:
        """Handle the updates since the last poll, then the waiting probes; return what was done.

        Decisions are applied here; questions are handed to the front door and answered in its threads.
        Raise ServiceError if getUpdates fails (the observer logs it and polls again).
        """
        offset = int(store.client.get(offset_key) or 0)
        updates = self.call("getUpdates", offset=offset, timeout=0, allowed_updates=["callback_query", "message"])
        store.client.set(probe_keys(offset_key)[2], datetime.now(UTC).isoformat(timespec="seconds"), ex=POLLED_TTL)
        done = []
        for update in updates:
            store.client.set(offset_key, update["update_id"] + 1)  # confirmed first: a failing update is not replayed
            done += self.dispatch(update, store)
        return done + self._probes(store, offset_key)

    def dispatch(self, update: dict[str, Any], store: ChangeStore, outcome_key: str = "") -> list[str]:
        """Do what classify says with one update; return what was done. outcome_key: where a probe's outcome goes."""
        kind = classify(update, self.chats)
        if kind == "decision":
            return self._decision(update, store)
        message = update.get("message") or {}
        chat = message.get("chat", {}).get("id")
        if kind == "stranger":
            log.info("telegram: ignored a message from chat %s: not in OPS_TELEGRAM_CHAT_IDS", chat)
            return [f"ignored a message from chat {chat}: not in OPS_TELEGRAM_CHAT_IDS"]
        if kind == "other":
            return []
        done = None
        if outcome_key:

            def done(outcome: Outcome) -> None:
                store.client.set(outcome_key, json.dumps(asdict(outcome)), ex=PROBE_TTL)

        text = {"help": HELP, "not-text": NOT_TEXT}.get(kind)
        if text is not None:
            self.front_door.reply(chat, message.get("message_id"), [text], done)
            return [f"chat {chat}: {kind}"]
        prefix = f"ops slice 6 check, asked: {message['text']}" if outcome_key else ""
        return [self.front_door.ask(chat, message.get("message_id"), message["text"], done, prefix)]

    def _probes(self, store: ChangeStore, offset_key: str) -> list[str]:
        """Take the questions `ops slice 6` left in Redis, as if typed in their chat; return what was done."""
        probes_key, outcomes, _ = probe_keys(offset_key)
        done = []
        waiting: list[str | bytes] = store.client.lpop(probes_key, 10) or []  # type: ignore[assignment]
        for raw in waiting:
            try:
                probe = json.loads(raw)
                chat, text, ident, at = int(probe["chat_id"]), str(probe["text"]), str(probe["id"]), float(probe["at"])
            except (ValueError, KeyError, TypeError):
                log.warning("telegram: dropped a malformed probe: %.200s", raw)
                continue
            if time.time() - at > PROBE_MAX_AGE:
                continue  # its check gave up long ago
            message = {"message_id": None, "chat": {"id": chat}, "text": text}
            done += self.dispatch({"update_id": None, "message": message}, store, outcome_key=f"{outcomes}{ident}")
        return done

    def _decision(self, update: dict[str, Any], store: ChangeStore) -> list[str]:
        query = update.get("callback_query")
        message = (query or {}).get("message") or update.get("message") or {}
        chat = message.get("chat", {}).get("id")
        who = ((query or message).get("from") or {}).get("username") or str(chat)
        if query:
            verb, _, ref = str(query.get("data", "")).partition(":")
        else:
            verb, ref = command(str(message.get("text", "")))
        if verb not in DECISION_COMMANDS:
            return []
        if chat not in self.chats:
            if query:
                self.call("answerCallbackQuery", callback_query_id=query["id"], text="This chat may not decide changes.")
            return [f"ignored {verb} from chat {chat}: not in OPS_TELEGRAM_CHAT_IDS"]
        open_ = store.list("pending") + store.list("failed")  # approving a failed change retries it
        pending = {button_ref(c.id): c.id for c in open_} | {c.id: c.id for c in open_}
        cr_id = pending.get(ref.strip())
        if cr_id is None:
            answer = "Nothing pending by that reference (decided already?)."
        else:
            try:
                store.decide(cr_id, verb == "approve", f"telegram:{who}")
                answer = f"{'approved' if verb == 'approve' else 'rejected'} {cr_id}"
            except AlreadyDecided as exc:  # someone decided it between the list and now
                answer = str(exc)
        if query:
            self.call("answerCallbackQuery", callback_query_id=query["id"], text=answer[:190])
        else:  # a typed decision gets its answer as a reply
            self.front_door.reply(chat, message.get("message_id"), [answer])
        return [answer]


def bot_for(config: EventsConfig) -> TelegramBot | None:
    """Return the bot the configuration asks for, or None (no token or no allowed chat: log only)."""
    if not config.telegram_token or not config.telegram_chats:
        return None
    webhook = RouterWebhook(config.n8n_url, config.webhook_key) if config.n8n_url and config.webhook_key else None
    return TelegramBot(config.telegram_token, config.telegram_chats, config.telegram_api, webhook=webhook)
