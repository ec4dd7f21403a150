"""The Telegram front door's decisions, without a program started: what each update is, and how answers are split.

``classify`` says what the one poller does with an update (decide a change,
help, ask the LLM, or nothing); ``split_message`` cuts an answer into
messages Telegram accepts (at most 4,096 UTF-16 code units each, source:
core.telegram.org/bots/api#sendmessage and core.telegram.org/api/entities).
The same paths against the Bot API's contract fake and a real n8n are in
tests/integration/test_telegram_front_door.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ops.config import load_settings
from ops.events.front_door import TELEGRAM_LIMIT, Answer, reply_parts, split_message, utf16_len
from ops.events.telegram import classify, command
from ops.secrets import init_secrets
from ops.slices import get_slice
from ops.slices.base import Target

ALLOWED = (1001, -100200)


def message(chat: int, text: str | None = "hello", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"message_id": 7, "chat": {"id": chat}, "date": 0, **extra}
    if text is not None:
        body["text"] = text
    return {"update_id": 1, "message": body}


def press(chat: int, data: str) -> dict[str, Any]:
    return {"update_id": 1, "callback_query": {"id": "9", "data": data, "message": {"message_id": 3, "chat": {"id": chat}}}}


# case -> (update, what the poller does)
DISPATCH: dict[str, tuple[dict[str, Any], str]] = {
    "a question from an allowed chat": (message(1001, "Explain AI"), "question"),
    "a question from an allowed group": (message(-100200, "2+2=?"), "question"),
    "the plan's /test command is a question": (message(1001, "/test Hello from Telegram"), "question"),
    "a question that starts with the word approve": (message(1001, "approve of this plan?"), "question"),
    "/approve ID": (message(1001, "/approve cr_evt_1"), "decision"),
    "/reject ID addressed to the bot in a group": (message(-100200, "/reject@AistackBot cr_evt_1"), "decision"),
    "/APPROVE in capitals": (message(1001, "/APPROVE cr_evt_1"), "decision"),
    "a button press": (press(1001, "approve:abc"), "decision"),
    "a stranger's button press (told no by the decision)": (press(666, "approve:abc"), "decision"),
    "a stranger's /approve (ignored by the decision)": (message(666, "/approve cr_evt_1"), "decision"),
    "a stranger's question": (message(666, "Explain AI"), "stranger"),
    "a stranger's /start": (message(666, "/start"), "stranger"),
    "a stranger's sticker": (message(666, None, sticker={"emoji": "👍"}), "stranger"),
    "/start": (message(1001, "/start"), "help"),
    "/help@AistackBot": (message(1001, "/help@AistackBot"), "help"),
    "a sticker from an allowed chat": (message(1001, None, sticker={"emoji": "👍"}), "not-text"),
    "blank text": (message(1001, "   "), "not-text"),
    "an edited message": ({"update_id": 1, "edited_message": message(1001)["message"]}, "other"),
    "an update with nothing": ({"update_id": 1}, "other"),
}


@pytest.mark.parametrize("case", DISPATCH)
def test_each_update_is_dispatched_by_kind_and_chat(case: str) -> None:
    update, expected = DISPATCH[case]
    assert classify(update, ALLOWED) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/approve cr_1", ("approve", "cr_1")),
        ("/reject@AistackBot  cr_1 ", ("reject", "cr_1")),
        ("/start", ("start", "")),
        ("approve cr_1", ("", "approve cr_1")),  # a command needs its slash
        ("hello /approve", ("", "hello /approve")),
    ],
)
def test_commands_are_parsed_as_telegram_sends_them(text: str, expected: tuple[str, str]) -> None:
    assert command(text) == expected


EMOJI = "😀"  # outside the BMP: one character, two UTF-16 code units
# case -> (text, the length of each part in characters)
SPLITS: dict[str, tuple[str, list[int]]] = {
    "short": ("hello", [5]),
    "exactly 4096 on one line": ("a" * 4096, [4096]),
    "4097 on one line: cut at the limit": ("a" * 4097, [4096, 1]),
    "one long line of 10,000": ("a" * 10_000, [4096, 4096, 1808]),
    "4097 with a line break: cut at the break": ("a" * 3000 + "\n" + "b" * 1096, [3000, 1096]),
    "a break right after the limit ends the first part": ("a" * 4096 + "\n" + "b" * 10, [4096, 10]),
    "the last break within the limit wins": ("a\n" * 3000, [4095, 1904]),
    "blank lines at a cut are dropped": ("a" * 4096 + "\n\n\n" + "b", [4096, 1]),
    "a blank part is dropped": ("a" * 4096 + "\n  ", [4096]),
    "2048 emoji are exactly 4096 units": (EMOJI * 2048, [2048]),
    "2049 emoji are two parts": (EMOJI * 2049, [2048, 1]),
    "one unit left for an emoji that needs two": ("a" * 4095 + EMOJI, [4095, 1]),
    "Cyrillic counts one unit a letter (two bytes in UTF-8)": ("щ" * 4096, [4096]),
    "empty": ("", []),
}


@pytest.mark.parametrize("case", SPLITS)
def test_answers_are_split_at_telegrams_limit_on_line_breaks_where_possible(case: str) -> None:
    text, lengths = SPLITS[case]
    parts = split_message(text)
    assert [len(p) for p in parts] == lengths
    assert all(0 < utf16_len(p) <= TELEGRAM_LIMIT for p in parts)
    assert "".join(parts).replace("\n", "") == text.replace("\n", "").strip(" ")  # only breaks and blanks dropped


def test_utf16_length_counts_code_units() -> None:
    assert (utf16_len("a"), utf16_len("щ"), utf16_len(EMOJI), utf16_len("👨‍👩‍👧")) == (1, 1, 2, 8)


def answer(text: str, served_by: str = "gemini/gemini-2.0-flash") -> Answer:
    return Answer(text, "gemini-2", served_by, "Simple/fast", 1234, "n8n-route-1-2")


def test_the_reply_ends_with_the_model_the_deployment_and_the_reason() -> None:
    [part] = reply_parts(answer("4"))
    assert part == "4\n\n— gemini-2 (served by gemini/gemini-2.0-flash): Simple/fast · 1.2 s"
    assert reply_parts(answer("4", served_by="gemini-2"))[0].endswith("— gemini-2: Simple/fast · 1.2 s")
    assert reply_parts(Answer("4", "gemini-2", "", "Simple/fast", 87, "t"))[0].endswith("— gemini-2: Simple/fast · 87 ms")
    assert reply_parts(answer("  "))[0].startswith("(the model answered with nothing)")


def test_a_very_long_answer_is_cut_saying_where_the_rest_is() -> None:
    parts = reply_parts(answer("line\n" * 20_000), max_parts=3)
    assert len(parts) == 3 and all(utf16_len(p) <= TELEGRAM_LIMIT for p in parts)
    assert parts[-1].startswith("(answer cut: ") and "trace n8n-route-1-2 in Langfuse" in parts[-1]
    assert parts[-1].endswith("Simple/fast · 1.2 s")


def test_slice_6_without_settings_or_telegram_says_what_is_missing(project: Path) -> None:
    target = Target("http://127.0.0.1:9", "sk-x", "http://127.0.0.1:9", "pk", "sk")
    [check] = get_slice(6).verify(target)
    assert not check.ok and "run it as `make slice-6`" in check.detail
    init_secrets(project / "vps.env.example", project / "vps.env")  # no bot token: Telegram off
    [check] = get_slice(6).verify(dataclasses.replace(target, settings=load_settings(project)))
    assert not check.ok and "set OPS_TELEGRAM_BOT_TOKEN and OPS_TELEGRAM_CHAT_IDS" in check.detail
