"""The mock provider's latency model: time to first token and a token rate, streamed or not; a share of failures.

The app runs in this process (aiohttp's test server); its waits are recorded instead of slept, so what is
asserted is how long the mock would make a client wait, not how long a test took.
"""

from __future__ import annotations

import asyncio
import json
import random
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ops.local import mock_provider
from ops.local.mock_provider import REALISTIC, STATE, LatencyModel, make_app

EXACT = {"ttft_ms": 500, "ttft_spread": 0, "tokens_per_s": 10, "rate_spread": 0}  # no spread: every draw the median
ANTHROPIC: tuple[str, dict[str, Any]] = ("/v1/messages", {"model": "claude-sonnet-5", "max_tokens": 9})
GEMINI: tuple[str, dict[str, Any]] = ("/v1beta/models/gemini-3.1-flash-lite:{method}", {})


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every asyncio.sleep the mock provider makes, recorded instead of slept."""
    recorded: list[float] = []

    async def sleep(seconds: float) -> None:
        recorded.append(round(seconds, 6))

    monkeypatch.setattr(mock_provider, "asyncio", SimpleNamespace(sleep=sleep))
    return recorded


async def _exchange(app: Any, calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[int, str]]:
    """POST each (path, json) to app; return each answer's status and text."""
    answers = []
    async with TestClient(TestServer(app)) as client:
        for path, body in calls:
            headers = {"Authorization": "Bearer k", "x-api-key": "k", "anthropic-version": "2023-06-01", "x-goog-api-key": "k"}
            response = await client.post(path, json=body, headers=headers)
            answers.append((response.status, await response.text()))
    return answers


def run(app: Any, *calls: tuple[str, dict[str, Any]]) -> list[tuple[int, str]]:
    return asyncio.run(_exchange(app, list(calls)))


def chat(stream: bool, content: str = "Test") -> tuple[str, dict[str, Any]]:
    body = {"model": "gpt-5.4-2026-03-05", "messages": [{"role": "user", "content": content}], "stream": stream}
    return "/v1/chat/completions", body


def configure(**behaviour: Any) -> tuple[str, dict[str, Any]]:
    return "/__mock/behaviour", {"provider": "openai", **behaviour}


def test_a_non_streamed_answer_waits_the_first_token_plus_its_tokens_at_the_rate(waits: list[float]) -> None:
    (_, _), (status, text) = run(make_app(), configure(latency=EXACT), chat(False))
    assert status == 200
    answer = '"content": "[mock openai gpt-5.4-2026-03-05] You said: Test"'
    assert answer.replace(" ", "") in text.replace(" ", "")
    tokens = len("[mock openai gpt-5.4-2026-03-05] You said: Test") // 4  # the mock's estimate: characters / 4
    assert waits == [round(0.5 + tokens / 10, 6)]


def test_a_streamed_answer_sends_its_first_token_after_the_ttft_then_each_at_the_rate(waits: list[float]) -> None:
    (_, _), (status, text) = run(make_app(), configure(latency=EXACT), chat(True))
    assert status == 200 and text.rstrip().endswith("data: [DONE]")
    words = ["[mock ", "openai ", "gpt-5.4-2026-03-05] ", "You ", "said: ", "Test"]
    # the time to first token, then per event its tokens / 10 per second (the role chunk and the stop carry none)
    expected = [0.5, 0.0] + [max(1, len(w) // 4) / 10 for w in words] + [0.0, 0.0]
    assert waits == [round(w, 6) for w in expected]


@pytest.mark.parametrize("spec", [ANTHROPIC, GEMINI])
def test_every_wire_format_is_paced(waits: list[float], spec: tuple[str, dict[str, Any]]) -> None:
    path, extra = spec
    provider = "anthropic" if "messages" in path else "gemini"
    setting = ("/__mock/behaviour", {"provider": provider, "latency": EXACT})
    if provider == "gemini":
        body: dict[str, Any] = {"contents": [{"parts": [{"text": "Test"}]}]}
        calls = [(path.format(method="generateContent"), body), (path.format(method="streamGenerateContent"), body)]
    else:
        message = {**extra, "messages": [{"role": "user", "content": "Test"}]}
        calls = [(path, message), (path, {**message, "stream": True})]
    answers = run(make_app(), setting, *calls)
    assert [status for status, _ in answers] == [200, 200, 200]
    plain, streamed = waits[0], waits[1:]
    # the same model either way (token estimates per event and per answer round differently)
    assert plain > 0.5 and streamed[0] == 0.5 and sum(streamed) == pytest.approx(plain, rel=0.25)


def test_latency_takes_the_provider_s_realistic_defaults_and_overrides(waits: list[float]) -> None:
    app = make_app()
    (ok, body), (_, _), (bad, _) = run(
        app,
        configure(latency={}),
        ("/__mock/behaviour", {"provider": "gemini", "latency": {"ttft_ms": 10}}),
        configure(latency={"ttft": 1}),
    )
    assert ok == 200 and json.loads(body)["latency"]["ttft_ms"] == 900
    assert app[STATE].behaviour["openai"].latency == REALISTIC["openai"]
    assert app[STATE].behaviour["gemini"].latency == LatencyModel(ttft_ms=10, tokens_per_s=REALISTIC["gemini"].tokens_per_s)
    assert bad == 400  # an unknown knob is refused, not ignored


def test_reset_returns_to_the_latency_the_mock_started_with(waits: list[float]) -> None:
    app = make_app(REALISTIC)
    run(app, configure(latency=EXACT), ("/__mock/reset", {}))
    assert {p: b.latency for p, b in app[STATE].behaviour.items()} == REALISTIC
    assert make_app()[STATE].behaviour["openai"].latency is None  # without --latency: answers at once, as before


def test_draws_spread_around_the_median() -> None:
    model = REALISTIC["openai"]
    rng = random.Random(7)
    draws = [model.draw(rng) for _ in range(2001)]
    ttfts = sorted(t for t, _ in draws)
    rates = sorted(1 / s for _, s in draws)
    assert ttfts[1000] == pytest.approx(0.9, rel=0.1) and rates[1000] == pytest.approx(45, rel=0.1)
    assert ttfts[0] < 0.6 < 1.3 < ttfts[-1]  # spread, not a constant
    assert LatencyModel(ttft_spread=0, rate_spread=0).draw(rng) == (0.9, 1 / 45)


def test_status_ratio_fails_only_that_share_of_calls(waits: list[float]) -> None:
    app = make_app()
    app[STATE].rng = random.Random(3)
    answers = run(app, configure(status=503, status_ratio=0.5), *[chat(False) for _ in range(40)])
    statuses = [status for status, _ in answers[1:]]
    assert set(statuses) == {200, 503}
    assert 10 <= statuses.count(503) <= 30
