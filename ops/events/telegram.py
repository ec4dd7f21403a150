"""Change requests through Telegram: a message with Approve / Reject buttons to each allowed chat.

The Bot API is called directly over HTTPS (sendMessage, getUpdates,
answerCallbackQuery): aiogram 3 needs pydantic < 2.14 and LiteLLM pins a
newer one. A button press (or ``/approve ID`` / ``/reject ID``) counts only
from a chat in OPS_TELEGRAM_CHAT_IDS; anyone else is told no and ignored.
The update offset lives in Redis, so a restart neither replays nor skips.
The token is in every URL: the bot redacts it from the HTTP client's log
records (ops.events.logs) and from its own errors.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import httpx

from ops.errors import OpsError, ServiceError
from ops.events.changes import AlreadyDecided
from ops.events.logs import protect, redact

if TYPE_CHECKING:
    from ops.events.changes import ChangeRequest, ChangeStore
    from ops.events.context import EventsConfig

API = "https://api.telegram.org"


def button_ref(cr_id: str) -> str:
    """A short stand-in for a change request id: callback data holds at most 64 bytes."""
    return hashlib.sha256(cr_id.encode()).hexdigest()[:20]


class TelegramBot:
    def __init__(self, token: str, chats: tuple[int, ...], api: str = "", timeout: float = 10) -> None:
        if not token:
            raise OpsError("OPS_TELEGRAM_BOT_TOKEN is empty")
        self.chats = chats
        self._base = f"{(api or API).rstrip('/')}/bot{token}"
        protect()  # httpx logs each request's URL, token included: redact it wherever logging is configured
        self._http = httpx.Client(timeout=timeout)

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
        """Apply the decisions pressed or typed in allowed chats since the last poll; return what was done."""
        offset = int(store.client.get(offset_key) or 0)
        updates = self.call("getUpdates", offset=offset, timeout=0, allowed_updates=["callback_query", "message"])
        done = []
        for update in updates:
            store.client.set(offset_key, update["update_id"] + 1)
            done += self._decision(update, store)
        return done

    def _decision(self, update: dict[str, Any], store: ChangeStore) -> list[str]:
        query = update.get("callback_query")
        message = (query or {}).get("message") or update.get("message") or {}
        chat = message.get("chat", {}).get("id")
        who = ((query or message).get("from") or {}).get("username") or str(chat)
        if query:
            verb, _, ref = str(query.get("data", "")).partition(":")
        else:
            verb, _, ref = str(message.get("text", "")).lstrip("/").partition(" ")
        if verb not in ("approve", "reject"):
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
                answer = f"{verb}d {cr_id}"
            except AlreadyDecided as exc:  # someone decided it between the list and now
                answer = str(exc)
        if query:
            self.call("answerCallbackQuery", callback_query_id=query["id"], text=answer[:190])
        return [answer]


def bot_for(config: EventsConfig) -> TelegramBot | None:
    """Return the bot the configuration asks for, or None (no token or no allowed chat: log only)."""
    if not config.telegram_token or not config.telegram_chats:
        return None
    return TelegramBot(config.telegram_token, config.telegram_chats, config.telegram_api)
