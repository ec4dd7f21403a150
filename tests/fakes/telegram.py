"""A contract fake of the Telegram Bot API: the three methods the observer uses.

Speaks ``POST /bot<token>/sendMessage`` (chat_id, text, reply_markup with an
inline keyboard, reply_parameters; answers the Message), ``getUpdates``
(offset, timeout, allowed_updates; confirms updates below offset as Telegram
does) and ``answerCallbackQuery``; every answer is ``{"ok": true, "result":
...}`` or ``{"ok": false, "error_code", "description"}`` (401 for a wrong
token, 400 for a bad parameter). Tests press buttons and type messages
through ``press`` and ``type``.

Refuses, as Telegram does (source: core.telegram.org/bots/api#sendmessage,
"1-4096 characters after entities parsing", and #replyparameters): a text
over 4,096 characters, 400 "Bad Request: message is too long"; a reply to a
message that is not in the chat without ``allow_sending_without_reply``, 400
"Bad Request: message to be replied not found".

Skips: webhooks, long polling (timeout > 0 answers at once), every other
method, message editing, rate limits (429 with retry_after), entities and
parse modes (the length is counted on the plain text, in UTF-16 code units
as Telegram counts entity offsets; the server's own count of characters
outside the BMP is not verified), the legacy ``reply_to_message_id``
parameter, and the 64-byte callback_data limit is checked but other field
limits are not.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TEXT_LIMIT = 4096  # UTF-16 code units


@dataclass
class TelegramState:
    token: str
    sent: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    messages: set[tuple[int, int]] = field(default_factory=set)  # (chat_id, message_id) of every message in a chat
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def press(self, chat_id: int, data: str, username: str = "alice") -> None:
        """Someone in chat_id presses an inline button carrying data."""
        message: dict[str, Any] = {"message_id": next(self._ids), "chat": {"id": chat_id, "type": "private"}, "date": 0}
        sender = {"id": chat_id, "is_bot": False, "first_name": username, "username": username}
        query = {"id": str(next(self._ids)), "from": sender, "message": message, "chat_instance": "1", "data": data}
        self.updates.append({"update_id": next(self._ids), "callback_query": query})

    def type(self, chat_id: int, text: str | None, username: str = "alice") -> int:
        """Someone in chat_id sends text (None: a message without text, a sticker); return its message_id."""
        message: dict[str, Any] = {"message_id": next(self._ids), "chat": {"id": chat_id, "type": "private"}, "date": 0,
                   "from": {"id": chat_id, "is_bot": False, "first_name": username, "username": username}}  # fmt: skip
        if text is None:
            message["sticker"] = {"file_id": "s1", "emoji": "👍"}
        else:
            message["text"] = text
        self.messages.add((chat_id, message["message_id"]))
        self.updates.append({"update_id": next(self._ids), "message": message})
        return int(message["message_id"])

    def replies_to(self, chat_id: int, message_id: int) -> list[str]:
        """The texts the bot sent to chat_id as replies to message_id, in order."""
        return [m["text"] for m in self.sent if m["chat_id"] == chat_id
                and (m.get("reply_parameters") or {}).get("message_id") == message_id]  # fmt: skip


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _fail(code: int, description: str) -> web.Response:
    return web.json_response({"ok": False, "error_code": code, "description": description}, status=code)


def telegram_app(state: TelegramState) -> web.Application:
    async def method(request: web.Request) -> web.Response:
        if request.match_info["token"] != state.token:
            return _fail(401, "Unauthorized")
        params: dict[str, Any] = await request.json() if request.can_read_body else {}
        name = request.match_info["method"]
        if name == "sendMessage":
            if "chat_id" not in params or not params.get("text"):
                return _fail(400, "Bad Request: chat_id and text are required")
            for row in params.get("reply_markup", {}).get("inline_keyboard", []):
                for button in row:
                    if len(button.get("callback_data", "").encode()) > 64:
                        return _fail(400, "Bad Request: BUTTON_DATA_INVALID")
            if len(str(params["text"]).encode("utf-16-le")) // 2 > TEXT_LIMIT:
                return _fail(400, "Bad Request: message is too long")
            reply = params.get("reply_parameters") or {}
            known = (params["chat_id"], reply.get("message_id")) in state.messages
            if reply and not known and not reply.get("allow_sending_without_reply"):
                return _fail(400, "Bad Request: message to be replied not found")
            state.sent.append(params)
            message_id = next(state._ids)
            state.messages.add((params["chat_id"], message_id))
            return _ok({"message_id": message_id, "chat": {"id": params["chat_id"]}, "date": 0, "text": params["text"]})
        if name == "getUpdates":
            offset = int(params.get("offset", 0))
            state.updates = [u for u in state.updates if u["update_id"] >= offset]
            return _ok(state.updates[: int(params.get("limit", 100))])
        if name == "answerCallbackQuery":
            state.answers.append(params)
            return _ok(True)
        return _fail(404, "Not Found")

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", method)
    return app


def main() -> None:
    """Serve the fake on 0.0.0.0:PORT for the bot token in OPS_TELEGRAM_BOT_TOKEN (the stack tier's container)."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description="Telegram Bot API contract fake")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    app = telegram_app(TelegramState(token=os.environ["OPS_TELEGRAM_BOT_TOKEN"]))
    web.run_app(app, host="0.0.0.0", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
