"""A contract fake of the Telegram Bot API: the three methods the observer uses.

Speaks ``POST /bot<token>/sendMessage`` (chat_id, text, reply_markup with an
inline keyboard; answers the Message), ``getUpdates`` (offset, timeout,
allowed_updates; confirms updates below offset as Telegram does) and
``answerCallbackQuery``; every answer is ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code", "description"}`` (401 for a wrong token, 400
for a bad parameter). Tests press buttons and type commands through
``press`` and ``type``.

Skips: webhooks, long polling (timeout > 0 answers at once), every other
method, message editing, rate limits, and the 64-byte callback_data limit
is checked but other field limits are not.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class TelegramState:
    token: str
    sent: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def press(self, chat_id: int, data: str, username: str = "alice") -> None:
        """Someone in chat_id presses an inline button carrying data."""
        message = {"message_id": next(self._ids), "chat": {"id": chat_id, "type": "private"}, "date": 0}
        sender = {"id": chat_id, "is_bot": False, "first_name": username, "username": username}
        query = {"id": str(next(self._ids)), "from": sender, "message": message, "chat_instance": "1", "data": data}
        self.updates.append({"update_id": next(self._ids), "callback_query": query})

    def type(self, chat_id: int, text: str, username: str = "alice") -> None:
        message = {"message_id": next(self._ids), "chat": {"id": chat_id, "type": "private"}, "date": 0, "text": text,
                   "from": {"id": chat_id, "is_bot": False, "first_name": username, "username": username}}  # fmt: skip
        self.updates.append({"update_id": next(self._ids), "message": message})


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
            state.sent.append(params)
            return _ok({"message_id": next(state._ids), "chat": {"id": params["chat_id"]}, "date": 0, "text": params["text"]})
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
