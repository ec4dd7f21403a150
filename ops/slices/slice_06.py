"""Slice 6: End-to-end test (Telegram -> n8n -> LiteLLM): the bot answers, traced, within 5 s, without an error.

The bot lives in the observer (the one poller of its updates; slices 7-8
start it), so the check needs the observer running with
OPS_TELEGRAM_BOT_TOKEN and OPS_TELEGRAM_CHAT_IDS. No program can type into
Telegram as a person, so the check leaves a question for the first allowed
chat on Redis beside the bot's update offset; the observer's poller takes it
as if Telegram had delivered it and it goes the way a typed one does: n8n's
routing webhook, LiteLLM, and a reply sent to that chat through the Bot API
(on the VPS the operator sees it arrive). Telegram's own delivery of typed
messages is covered by "no error logged": getUpdates succeeded within the
last 30 s.
"""

from __future__ import annotations

from typing import Any

from ops.errors import OpsError
from ops.slices.base import Check, Target, generations, guarded, wait_for_trace

NUMBER = 6
TITLE = "End-to-end test (Telegram -> n8n -> LiteLLM)"
REQUIRES: tuple[int, ...] = (5,)
SERVICES: tuple[str, ...] = ()
FILES: tuple[str, ...] = ()
DATABASES: tuple[str, ...] = ()
QUESTION = "Hello from Telegram"  # the plan's message
WITHIN_SECONDS = 5.0  # the plan's round trip
WAIT_SECONDS = 60.0  # how long the check waits for any answer at all
TRACE_SECONDS = 10.0


def _answered(target: Target, outcome: dict[str, Any] | None, chat: int, seconds: float) -> list[Check]:
    if outcome is None:
        detail = f"no reply within {WAIT_SECONDS:.0f} s: is the observer's Telegram set up (its log says)?"
        return [Check("the bot answers", False, detail), Check("round trip under 5 s", False, "no reply")]
    answer = outcome.get("answer") or {}
    sent = outcome.get("sent") or []
    if answer and sent and not outcome.get("error"):
        served = f" (served by {answer['served_by']})" if answer.get("served_by") else ""
        detail = f"{len(sent)} message(s) to chat {chat}: {answer['model']}{served}: {answer['reason']}"
    else:
        detail = outcome.get("error") or "no message was sent"
    return [
        Check("the bot answers", bool(answer and sent and not outcome.get("error")), detail),
        target.in_time(
            "round trip under 5 s",
            seconds if sent else float("inf"),
            WITHIN_SECONDS,
            " from the question to Telegram accepting the reply",
        ),
    ]


def _traced(target: Target, outcome: dict[str, Any] | None) -> Check:
    trace_id = str(((outcome or {}).get("answer") or {}).get("trace_id") or "")
    if not trace_id:
        return Check("traced in Langfuse", False, "no answer naming a trace")
    trace = wait_for_trace(target, trace_id, lambda t: bool(generations(t)), TRACE_SECONDS)
    if trace is None:
        return Check("traced in Langfuse", False, f"no trace {trace_id} in Langfuse within {TRACE_SECONDS:.0f} s")
    return Check("traced in Langfuse", True, f"trace {trace_id}: model {generations(trace)[0].get('model')}")


def verify(target: Target) -> list[Check]:
    if target.settings is None:
        return [Check("telegram bot", False, "no project settings to reach Redis: run it as `make slice-6`")]
    import time

    from ops.events.context import events_config
    from ops.events.telegram import last_poll, offset_key, send_probe, wait_for_probe

    try:
        config = events_config(target.settings)
        if not config.telegram_token or not config.telegram_chats:
            missing = "Telegram is off: set OPS_TELEGRAM_BOT_TOKEN and OPS_TELEGRAM_CHAT_IDS in vps.env (docs/TELEGRAM.md)"
            return [Check("telegram bot", False, missing)]
        client = config.client()
        beat: Any = client.get(f"{config.streams.name}:observer:heartbeat")
        if beat is None:
            detail = "no observer heartbeat in 30 s: the bot runs in the observer (`make slice-8` starts it)"
            return [Check("observer running", False, detail)]
        key = offset_key(config.streams.name)
        chat = config.telegram_chats[0]
        started = time.monotonic()
        ident = send_probe(client, key, chat, QUESTION)
        outcome = wait_for_probe(client, key, ident, WAIT_SECONDS)
        seconds = time.monotonic() - started
        checks = [Check("observer running", True, f"last heartbeat {beat}"), *_answered(target, outcome, chat, seconds)]
        checks.append(guarded("traced in Langfuse", lambda: _traced(target, outcome)))
        polled = last_poll(client, key)
        error = (outcome or {}).get("error") or ("" if polled else "getUpdates has not succeeded in 30 s")
        clean = f"getUpdates ok at {polled}; the question was answered without an error"
        checks.append(Check("no error logged", not error and outcome is not None, error or clean))
    except OpsError as exc:
        return [Check("telegram bot", False, str(exc))]
    return checks
