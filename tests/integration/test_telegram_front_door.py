"""The Telegram front door (slice 6): the observer's one poller, the Bot API's contract fake, a real n8n.

A message typed in an allowed chat goes, through the real observer loop on a
real Redis, to the routing workflow on the real n8n 2.40.7 (the module's own,
set up by slice 4's apply: tests/integration/test_n8n_router.py's fixture),
the real LiteLLM and the mock providers, and the answer comes back to the
Telegram fake as a reply. Approvals keep working beside it, a stranger gets
nothing, a slow model stalls nothing, errors are one line, and `ops slice 6`
verifies the plan's criteria. Only Telegram and Langfuse are fakes.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from ops.config import Settings, load_settings
from ops.events.context import events_config
from ops.events.front_door import TELEGRAM_LIMIT, Answer, FrontDoor, RouterWebhook, reply_parts, utf16_len
from ops.events.observer import Observer, Policy
from ops.events.publisher import Publisher
from ops.events.reconciler import Reconciler
from ops.events.telegram import TelegramBot, offset_key
from ops.local.processes import RedisServer, wait_until
from ops.slices import run_verify
from tests.fakes.server import ThreadedServer
from tests.fakes.telegram import TelegramState, telegram_app
from tests.integration.test_events import client, event, remote, subjects, work
from tests.integration.test_n8n_router import Stack, control, stack

pytestmark = pytest.mark.integration
__all__ = ["client", "control", "remote", "stack", "work"]  # fixtures shared with test_events.py and test_n8n_router.py

TOKEN = "123456:AAHfrontDOORsecret_-x"
CHAT, STRANGER = 1001, 666
OFFSET = offset_key("agent_events")


@pytest.fixture
def telegram() -> Iterator[tuple[TelegramState, str]]:
    state = TelegramState(token=TOKEN)
    with ThreadedServer(telegram_app(state)) as server:
        yield state, server.url


@dataclass
class Running:
    observer: Observer
    stop: threading.Event
    thread: threading.Thread


@pytest.fixture
def run_observer() -> Iterator[Callable[[Observer], Running]]:
    """Run observers in threads, as `ops observer run` does; stop them at the end."""
    started: list[Running] = []

    def start(observer: Observer) -> Running:
        stop = threading.Event()
        thread = threading.Thread(target=observer.run, args=(stop,), daemon=True)
        thread.start()
        started.append(Running(observer, stop, thread))
        return started[-1]

    yield start
    for running in started:
        running.stop.set()
        running.thread.join(15)


def bot_for(stack: Stack, api: str, webhook: RouterWebhook | None = None) -> TelegramBot:
    return TelegramBot(TOKEN, (CHAT,), api=api, webhook=webhook or RouterWebhook(stack.n8n.url, stack.secret))


def observer_with(bot: TelegramBot, client: redis.Redis, work: Path, tmp_path: Path) -> Observer:
    """The observer as ops.events.context wires it, with this bot."""
    return Observer(
        client,
        tmp_path / "state",
        Reconciler(work, Policy().roots),
        on_pending=bot.notify_pending,
        poll_decisions=lambda store: bot.poll_decisions(store, OFFSET),
    )


def project_settings(project: Path, stack: Stack, redis_server: RedisServer, work: Path, tmp_path: Path, api: str) -> Settings:
    """A project whose vps.env points the observer at this Redis, the Telegram fake and the module's n8n."""
    (project / "vps.env").write_text(
        (stack.settings.project_dir / "vps.env").read_text()  # the webhook key slice 4 gave n8n
        + f"OPS_REDIS_URL={redis_server.url}\nOPS_EVENTS_REPO={work}\nOPS_EVENTS_STATE_DIR={tmp_path / 'state'}\n"
        f"OPS_TELEGRAM_BOT_TOKEN={TOKEN}\nOPS_TELEGRAM_CHAT_IDS={CHAT}\nOPS_TELEGRAM_API={api}\n"
        f"OPS_N8N_URL={stack.n8n.url}\nOPS_VERIFY_TIME_FACTOR=20\n"
    )
    return load_settings(project)


def test_a_question_gets_the_answer_as_a_reply_and_approvals_keep_working(
    stack: Stack, control: object, telegram: tuple[TelegramState, str], client: redis.Redis, work: Path,
    remote: Path, tmp_path: Path, run_observer: Callable[[Observer], Running],
) -> None:  # fmt: skip
    state, api = telegram
    observer = run_observer(observer_with(bot_for(stack, api), client, work, tmp_path)).observer

    asked = state.type(CHAT, "2+2=?")
    wait_until(lambda: bool(state.replies_to(CHAT, asked)), 60, "the answer")
    [reply] = state.replies_to(CHAT, asked)
    answer, footer = reply.rsplit("\n\n", 1)
    assert answer == "[mock gemini gemini-3.1-flash-lite] You said: 2+2=?"
    assert footer.startswith("— gemini-2 (served by gemini/gemini-3.1-flash-lite): Simple/fast · ")
    assert footer.endswith((" ms", " s"))

    # a stranger gets nothing from the LLM: no webhook call, no reply
    calls = len(stack.control.calls())
    stranger = state.type(STRANGER, "Explain AI")
    Publisher(client).publish(event("project:p", 1, "/config/limits", data={"max": 5}))  # held: buttons
    wait_until(lambda: len(state.sent) == 2, 30, "the held change's message")
    wait_until(lambda: int(client.get(OFFSET) or 0) > stranger, 30, "the stranger's message taken")
    state.press(CHAT, state.sent[-1]["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    wait_until(lambda: subjects(remote)[0] == "task_created: /config/limits", 30, "the approved change committed")
    assert [m for m in state.sent if m["chat_id"] == STRANGER] == []
    assert len(stack.control.calls()) == calls
    assert observer.store.list()[0].decided_by == "telegram:alice"

    # /approve as a command still decides, and its answer comes back as a reply
    Publisher(client).publish(event("project:p", 2, "/config/limits", data={"max": 6}))
    wait_until(lambda: bool(observer.store.list("pending")), 30, "the second held change")
    held = observer.store.list("pending")[0].id
    typed = state.type(CHAT, f"/reject {held}")
    wait_until(lambda: bool(state.replies_to(CHAT, typed)), 30, "the decision's reply")
    assert state.replies_to(CHAT, typed) == [f"rejected {held}"]


def test_a_long_answer_reaches_telegram_in_parts_within_its_limit(telegram: tuple[TelegramState, str]) -> None:
    state, api = telegram
    bot = TelegramBot(TOKEN, (CHAT,), api=api)
    asked = state.type(CHAT, "write a lot")
    text = "\n".join(f"line {n} " + "ж" * 90 for n in range(300))  # about 30,000 characters
    bot.front_door.reply(CHAT, asked, reply_parts(Answer(text, "gpt-4", "gpt-5.4", "Complex reasoning", 900, "t1")))
    parts = state.replies_to(CHAT, asked)
    assert len(parts) == 8 and all(utf16_len(p) <= TELEGRAM_LIMIT for p in parts)
    assert "\n".join(parts).startswith(text) and parts[-1].endswith("— gpt-4 (served by gpt-5.4): Complex reasoning · 900 ms")
    # the fake refuses what Telegram refuses: one character over the limit
    refused = httpx.post(f"{api}/bot{TOKEN}/sendMessage", json={"chat_id": CHAT, "text": "x" * (TELEGRAM_LIMIT + 1)})
    assert (refused.status_code, refused.json()["description"]) == (400, "Bad Request: message is too long")


def test_webhook_failures_are_one_line_replies_and_never_replayed(
    stack: Stack, control: object, telegram: tuple[TelegramState, str], client: redis.Redis, work: Path, tmp_path: Path,
    run_observer: Callable[[Observer], Running],
) -> None:  # fmt: skip
    state, api = telegram
    for provider in ("openai", "anthropic", "gemini", "openrouter"):
        stack.control.set(provider, status=500)
    first = run_observer(observer_with(bot_for(stack, api), client, work, tmp_path))
    asked = state.type(CHAT, "2+2=?")
    wait_until(lambda: bool(state.replies_to(CHAT, asked)), 60, "the failure's reply")
    [reply] = state.replies_to(CHAT, asked)
    assert reply.startswith("No answer: n8n answered 502: every model failed: ") and "\n" not in reply
    calls = len(stack.control.calls())
    later = state.type(STRANGER, "anyone?")  # once the poller has confirmed this one, it has polled again since
    wait_until(lambda: int(client.get(OFFSET) or 0) > later, 30, "a later poll")
    assert len(stack.control.calls()) == calls and len(state.replies_to(CHAT, asked)) == 1  # not replayed

    first.stop.set()
    first.thread.join(15)
    wrong = bot_for(stack, api, RouterWebhook(stack.n8n.url, "not-the-key"))
    wrong_observer = observer_with(wrong, client, work, tmp_path / "other")
    again = state.type(CHAT, "2+2=?")
    wrong_observer.run(threading.Event(), max_idle_polls=1)
    wait_until(lambda: bool(state.replies_to(CHAT, again)), 30, "the refusal's reply")
    assert state.replies_to(CHAT, again) == [
        "No answer: n8n refused the webhook key: N8N_WEBHOOK_SECRET is not the one slice 4 gave n8n"
    ]


def test_slice_6_verifies_the_bot_answers_traced_with_no_token_in_any_log_record(
    stack: Stack, control: object, telegram: tuple[TelegramState, str], redis_server: RedisServer, work: Path,
    tmp_path: Path, project: Path, run_observer: Callable[[Observer], Running], caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    state, api = telegram
    settings = project_settings(project, stack, redis_server, work, tmp_path, api)
    target = dataclasses.replace(stack.target, settings=settings)
    assert not run_verify(6, target).ok  # no observer yet: nothing polls the bot

    levels = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    try:
        for name in levels:  # the HTTP clients at their most talkative: every URL, token and all, is logged
            logging.getLogger(name).setLevel(logging.DEBUG)
        with caplog.at_level(logging.DEBUG):
            run_observer(events_config(settings).observer())  # the observer as `ops observer run` wires it
            report = run_verify(6, target)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    assert report.ok, report.to_dict()
    assert [c.name for c in report.checks] == [
        "observer running",
        "the bot answers",
        "round trip under 5 s",
        "traced in Langfuse",
        "no error logged",
    ]
    [probe_reply] = [m["text"] for m in state.sent if m["chat_id"] == CHAT]
    assert probe_reply.startswith("ops slice 6 check, asked: Hello from Telegram\n\n[mock gemini")
    lines = [r.getMessage() for r in caplog.records]
    assert any("bot<redacted>/getUpdates" in line for line in lines), lines[:20]
    assert any("/webhook/litellm-route" in line for line in lines)  # the webhook call was logged too
    assert not [line for line in lines if TOKEN in line or TOKEN.split(":")[1] in line]
    assert not [r for r in caplog.records if r.name.startswith("ops") and r.levelno >= logging.WARNING]


def test_a_slow_model_stalls_neither_approvals_nor_other_questions(
    stack: Stack, control: object, telegram: tuple[TelegramState, str], client: redis.Redis, work: Path,
    remote: Path, tmp_path: Path, run_observer: Callable[[Observer], Running],
) -> None:  # fmt: skip
    """The model answers after 22 s; the bot gives up at 20 s (n8n's execution ends soon after the test)."""
    state, api = telegram
    stack.control.set("openai", latency_ms=22_000)  # "Explain ..." routes to gpt-4
    bot = bot_for(stack, api, RouterWebhook(stack.n8n.url, stack.secret, timeout=20))
    bot.front_door = FrontDoor(bot.front_door.webhook, bot.call, workers=1, queued=0)
    run_observer(observer_with(bot, client, work, tmp_path))
    slow = state.type(CHAT, "Explain quantum computing")
    wait_until(lambda: bool([c for c in stack.control.calls() if c["provider"] == "openai"]), 60, "the slow question asked")

    busy = state.type(CHAT, "2+2=?")  # the one worker is taken: told at once, not queued for ever
    Publisher(client).publish(event("project:s", 1, "/config/limits", data={"max": 5}))
    wait_until(lambda: bool(state.replies_to(CHAT, busy) and len(state.sent) >= 2), 15, "the busy reply and the held change")
    assert state.replies_to(CHAT, busy) == ["Busy: answering 1 question(s) already; send it again in a minute."]
    button = next(m for m in state.sent if "reply_markup" in m)["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    state.press(CHAT, button)
    wait_until(lambda: subjects(remote)[0] == "task_created: /config/limits", 15, "the approval applied")
    assert state.replies_to(CHAT, slow) == []  # still waiting for the model, and nothing else waited for it

    wait_until(lambda: bool(state.replies_to(CHAT, slow)), 60, "the slow question's timeout reply")
    assert state.replies_to(CHAT, slow) == ["No answer: the model took over 20 s; try again later, or ask something shorter"]
