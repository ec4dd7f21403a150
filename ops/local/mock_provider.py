"""A mock LLM provider speaking the OpenAI, Anthropic and Gemini wire formats.

Local mode points LiteLLM at it so the stack runs with no API keys; the test
fakes in ``tests/fakes`` reuse it with failure injection. It speaks:

* OpenAI / OpenRouter: ``POST …/chat/completions`` (JSON or SSE with
  ``stream: true``; a usage chunk when ``stream_options.include_usage``),
  ``GET …/models``.
* Anthropic: ``POST …/v1/messages`` (JSON or the SSE event sequence
  ``message_start`` … ``message_stop``).
* Gemini: ``POST …/models/{model}:generateContent`` and
  ``:streamGenerateContent?alt=sse``.

It refuses, in each provider's own error shape, what the real one refuses
(tests/integration/test_fakes_contract.py):

* a missing or rejected key: 401;
* a model the provider does not serve (``MODELS``): OpenAI 404
  ``model_not_found``, Anthropic 404 ``not_found_error``, Gemini 404
  ``NOT_FOUND``, OpenRouter 400 "… is not a valid model ID";
* Anthropic without the ``anthropic-version`` header, or without
  ``max_tokens``: 400 ``invalid_request_error``.

It does not check (it accepts what a real provider may refuse): tools and
function calls, images, embeddings, logprobs, the other body fields and their
types (temperature ranges, message roles and their order), context-window
and output-token limits, rate limits per key, and real tokenisation (tokens
are estimated as characters / 4).

Each provider's behaviour (latency, forced status, hang, keys to reject, reported
completion tokens) is set
through ``POST /__mock/behaviour`` and every call is recorded for
``GET /__mock/calls``; ``POST /__mock/reset`` clears both.

Latency model (the load test's "answers like real models"): a provider with a
``latency`` (``LatencyModel``) waits a time to first token, then streams its
tokens at a token rate, each drawn per call from a log-normal distribution
around a median; a non-streamed answer arrives after the same total time.
``"latency": {}`` in a behaviour takes the provider's defaults (``REALISTIC``),
keys in it override them; ``--latency realistic`` on the command line starts
every provider with them (and ``reset`` returns to that). ``status_ratio``
makes only that share of the calls answer the forced ``status``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

PROVIDERS = ("openai", "anthropic", "gemini", "openrouter")
# The models each provider serves here: the deployments of litellm-config.yaml (a unit test keeps the two in step,
# tests/unit/test_mock_provider.py). A request for any other model gets the provider's own "not found" answer.
MODELS: dict[str, frozenset[str]] = {
    "openai": frozenset({"gpt-5.4-2026-03-05"}),
    "anthropic": frozenset({"claude-sonnet-5"}),
    "gemini": frozenset({"gemini-3.1-flash-lite"}),
    "openrouter": frozenset({"google/gemini-3.1-flash-lite", "anthropic/claude-opus-5"}),
}


@dataclass(frozen=True)
class LatencyModel:
    """How fast a provider answers: medians and log-normal spreads (sigma of the logarithm, 0 = always the median)."""

    ttft_ms: float = 900.0  # time to first token, median
    ttft_spread: float = 0.35  # about 1.8x the median at p95
    tokens_per_s: float = 45.0  # output token rate, median
    rate_spread: float = 0.2

    def draw(self, rng: random.Random) -> tuple[float, float]:
        """Given a random source, return one call's (time to first token, seconds per output token)."""
        ttft = self.ttft_ms / 1000 * math.exp(self.ttft_spread * rng.gauss(0, 1))
        rate = max(1.0, self.tokens_per_s * math.exp(self.rate_spread * rng.gauss(0, 1)))
        return ttft, 1 / rate


# Medians of public TTFT and throughput probes of these models' families (jonathanwrede.de, "TTFT varies 13x across
# LLM providers", 2026: gpt-5.4 912 ms and 45 tok/s, gemini flash-lite 321 ms and 192 tok/s, claude opus 1.7 s and
# 70 tok/s; modelstats.ai, April 2026: claude sonnet 1.3 s): the order of magnitude, not any day's figures.
REALISTIC: dict[str, LatencyModel] = {
    "openai": LatencyModel(ttft_ms=900, tokens_per_s=45),
    "anthropic": LatencyModel(ttft_ms=1300, tokens_per_s=45),
    "gemini": LatencyModel(ttft_ms=350, tokens_per_s=190),
    "openrouter": LatencyModel(ttft_ms=1000, tokens_per_s=70),
}


@dataclass
class Behaviour:
    """How one provider answers: the knobs a failure test turns."""

    latency_ms: float = 0.0
    status: int | None = None
    status_ratio: float = 1.0  # the share of calls answered with status (drawn per call)
    hang: bool = False
    reject_keys: list[str] = field(default_factory=list)
    completion_tokens: int | None = None  # forced usage, to spend a budget fast
    latency: LatencyModel | None = None  # time to first token and token rate, as a real model


@dataclass
class Call:
    provider: str
    model: str
    stream: bool
    api_key: str
    at: float
    peer: str = ""  # the caller's address: which gateway replica sent the call (ops bench scaling)


class MockState:
    """Behaviour per provider and the log of calls received."""

    def __init__(self, latency: dict[str, LatencyModel] | None = None) -> None:
        self.behaviour: dict[str, Behaviour] = {}
        self.calls: list[Call] = []
        self.latency = latency or {}  # each provider's latency model after a reset (--latency)
        self.rng = random.Random()
        self.reset()

    def reset(self) -> None:
        self.behaviour = {p: Behaviour(latency=self.latency.get(p)) for p in PROVIDERS}
        self.calls = []


STATE = web.AppKey("state", MockState)


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _completion_tokens(state: MockState, provider: str, text: str) -> int:
    forced = state.behaviour[provider].completion_tokens
    return forced if forced is not None else _estimate_tokens(text)


def _answer(provider: str, model: str, prompt: str) -> str:
    excerpt = " ".join(prompt.split()[:12])
    return f"[mock {provider} {model}] You said: {excerpt}"


def _error_body(provider: str, status: int) -> dict[str, Any]:
    message = {401: "Invalid API key", 429: "Rate limit exceeded"}.get(status, "Upstream error")
    if provider == "anthropic":
        kind = {401: "authentication_error", 429: "rate_limit_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    if provider == "gemini":
        state = {401: "UNAUTHENTICATED", 429: "RESOURCE_EXHAUSTED"}.get(status, "INTERNAL")
        return {"error": {"code": status, "message": message, "status": state}}
    kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "code": str(status)}}


def _unknown_model(provider: str, model: str, request: web.Request) -> web.Response:
    """The provider's own answer to a model it does not serve."""
    if provider == "anthropic":
        # source: Anthropic API errors (404 not_found_error; the message names the model: "model: <id>")
        body: dict[str, Any] = {"type": "error", "error": {"type": "not_found_error", "message": f"model: {model}"}}
        return web.json_response(body, status=404)
    if provider == "gemini":
        # source: Gemini API's answer for an unknown model (google-gemini issues: 404, status NOT_FOUND)
        version = request.match_info.get("version", "v1beta")
        message = (
            f"models/{model} is not found for API version {version}, or is not supported for generateContent. "
            "Call ListModels to see the list of available models and their supported methods."
        )
        return web.json_response({"error": {"code": 404, "message": message, "status": "NOT_FOUND"}}, status=404)
    if provider == "openrouter":
        # source: OpenRouter's answer for an unknown model id (400, {"error": {"message", "code"}})
        return web.json_response({"error": {"message": f"{model} is not a valid model ID", "code": 400}}, status=400)
    # source: OpenAI API errors (404, code model_not_found, type invalid_request_error)
    message = f"The model `{model}` does not exist or you do not have access to it."
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "model_not_found"}}
    return web.json_response(body, status=404)


def _anthropic_invalid(message: str) -> web.Response:
    # source: Anthropic API errors (400 invalid_request_error), e.g. "anthropic-version: header is required"
    return web.json_response({"type": "error", "error": {"type": "invalid_request_error", "message": message}}, status=400)


def _refusal(provider: str, model: str, body: dict[str, Any], request: web.Request) -> web.Response | None:
    """Given an authenticated request, return the provider's refusal of what it does not accept, or None."""
    if provider == "anthropic":
        if not request.headers.get("anthropic-version"):
            return _anthropic_invalid("anthropic-version: header is required")
        if body.get("max_tokens") is None:
            return _anthropic_invalid("max_tokens: Field required")
    if model not in MODELS[provider]:
        return _unknown_model(provider, model, request)
    return None


def _api_key(provider: str, request: web.Request) -> str:
    if provider == "anthropic":
        return request.headers.get("x-api-key", "")
    if provider == "gemini":
        return str(request.query.get("key") or request.headers.get("x-goog-api-key", ""))
    auth = request.headers.get("Authorization", "")
    return auth.removeprefix("Bearer ").strip()


async def _gate(
    state: MockState, provider: str, model: str, stream: bool, request: web.Request, body: dict[str, Any]
) -> web.Response | None:
    """Record the call and apply the provider's behaviour and refusals; return an error response or None."""
    key = _api_key(provider, request)
    state.calls.append(Call(provider, model, stream, key, time.time(), request.remote or ""))
    behaviour = state.behaviour[provider]
    if behaviour.hang:
        await asyncio.sleep(3600)
    if behaviour.latency_ms:
        await asyncio.sleep(behaviour.latency_ms / 1000)
    status = behaviour.status
    if status is not None and behaviour.status_ratio < 1 and state.rng.random() >= behaviour.status_ratio:
        status = None
    if status is None and (not key or key in behaviour.reject_keys):
        status = 401
    if status is not None:
        return web.json_response(_error_body(provider, status), status=status)
    return _refusal(provider, model, body, request)


def _pacing(state: MockState, provider: str) -> tuple[float, float]:
    """Return one call's (seconds before its first token, seconds per token after) by the provider's latency model."""
    model = state.behaviour[provider].latency
    return model.draw(state.rng) if model is not None else (0.0, 0.0)


async def _paced(state: MockState, provider: str, text: str) -> None:
    """Wait as long as the provider's latency model takes to produce text whole (a non-streamed answer)."""
    ttft, per_token = _pacing(state, provider)
    if ttft or per_token:
        await asyncio.sleep(ttft + per_token * _estimate_tokens(text))


async def _sse(
    request: web.Request,
    events: list[tuple[str | None, dict[str, Any] | str]],
    pacing: tuple[float, float] = (0.0, 0.0),
) -> web.StreamResponse:
    """Stream events; with pacing (ttft, seconds per token), the first after ttft, then each after its tokens."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    ttft, per_token = pacing
    if ttft:
        await asyncio.sleep(ttft)
    await response.prepare(request)
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        if per_token:
            await asyncio.sleep(per_token * _delta_tokens(data))
        head = f"event: {name}\n" if name else ""
        await response.write(f"{head}data: {payload}\n\n".encode())
    await response.write_eof()
    return response


def _delta_tokens(data: dict[str, Any] | str) -> int:
    """The output tokens an event carries (estimated from its text: an OpenAI, Anthropic or Gemini delta), or 0."""
    if isinstance(data, str):
        return 0
    texts = [c.get("delta", {}).get("content") for c in data.get("choices", [])]
    texts.append((data.get("delta") or {}).get("text"))
    for candidate in data.get("candidates", []):
        texts += [part.get("text") for part in candidate.get("content", {}).get("parts", [])]
    text = "".join(t for t in texts if isinstance(t, str))
    return _estimate_tokens(text) if text else 0


def _prompt_of_openai(body: dict[str, Any]) -> str:
    parts = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
        parts.append(str(content or ""))
    return "\n".join(parts)


async def openai_chat(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    provider = "openrouter" if "/api/v1/" in request.path else "openai"
    body = await request.json()
    model, stream = str(body.get("model", "")), bool(body.get("stream"))
    error = await _gate(state, provider, model, stream, request, body)
    if error is not None:
        return error
    prompt = _prompt_of_openai(body)
    text = _answer(provider, model, prompt)
    out_tokens = _completion_tokens(state, provider, text)
    usage = {
        "prompt_tokens": _estimate_tokens(prompt),
        "completion_tokens": out_tokens,
        "total_tokens": _estimate_tokens(prompt) + out_tokens,
    }
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if not stream:
        await _paced(state, provider, text)
        return web.json_response(
            {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage,
            }
        )

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events: list[tuple[str | None, dict[str, Any] | str]] = [(None, chunk({"role": "assistant", "content": ""}, None))]
    events += [(None, chunk({"content": word}, None)) for word in re.findall(r"\S+\s*", text)]
    events.append((None, chunk({}, "stop")))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append((None, {**chunk({}, None), "choices": [], "usage": usage}))
    events.append((None, "[DONE]"))
    return await _sse(request, events, _pacing(state, provider))


async def openai_models(request: web.Request) -> web.Response:
    provider = "openrouter" if "/api/v1/" in request.path else "openai"
    names = sorted(MODELS[provider])
    return web.json_response({"object": "list", "data": [{"id": n, "object": "model", "owned_by": "mock"} for n in names]})


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await request.json()
    model, stream = str(body.get("model", "")), bool(body.get("stream"))
    error = await _gate(state, "anthropic", model, stream, request, body)
    if error is not None:
        return error
    system = body.get("system") or ""
    prompt = (system if isinstance(system, str) else "") + "\n" + _prompt_of_openai(body)
    text = _answer("anthropic", model, prompt)
    ident = f"msg_{uuid.uuid4().hex[:24]}"
    in_tokens, out_tokens = _estimate_tokens(prompt), _completion_tokens(state, "anthropic", text)
    if not stream:
        await _paced(state, "anthropic", text)
        return web.json_response(
            {
                "id": ident,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": in_tokens, "output_tokens": out_tokens},
            }
        )
    start = {
        "type": "message_start",
        "message": {
            "id": ident,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": in_tokens, "output_tokens": 1},
        },
    }
    events: list[tuple[str | None, dict[str, Any] | str]] = [
        ("message_start", start),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    for word in re.findall(r"\S+\s*", text):
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}}
        events.append(("content_block_delta", delta))
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": out_tokens},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return await _sse(request, events, _pacing(state, "anthropic"))


async def gemini_generate(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    model, method = request.match_info["model"], request.match_info["method"]
    stream = method == "streamGenerateContent"
    body = await request.json()
    error = await _gate(state, "gemini", model, stream, request, body)
    if error is not None:
        return error
    prompt = "\n".join(str(part.get("text", "")) for content in body.get("contents", []) for part in content.get("parts", []))
    text = _answer("gemini", model, prompt)
    out_tokens = _completion_tokens(state, "gemini", text)
    usage = {
        "promptTokenCount": _estimate_tokens(prompt),
        "candidatesTokenCount": out_tokens,
        "totalTokenCount": _estimate_tokens(prompt) + out_tokens,
    }

    def response(piece: str, finish: str | None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model}

    if not stream:
        await _paced(state, "gemini", text)
        return web.json_response(response(text, "STOP"))
    words = re.findall(r"\S+\s*", text)
    events: list[tuple[str | None, dict[str, Any] | str]] = [
        (None, response(word, "STOP" if i == len(words) - 1 else None)) for i, word in enumerate(words)
    ]
    return await _sse(request, events, _pacing(state, "gemini"))


async def set_behaviour(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await request.json()
    provider = body.pop("provider", None)
    if provider not in PROVIDERS:
        return web.json_response({"error": f"provider must be one of {', '.join(PROVIDERS)}"}, status=400)
    try:
        latency = body.pop("latency", None)
        if latency is not None:  # {} takes the provider's realistic defaults; its keys override them
            body["latency"] = LatencyModel(**{**asdict(REALISTIC[provider]), **latency})
        state.behaviour[provider] = Behaviour(**body)
    except TypeError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(asdict(state.behaviour[provider]))


async def get_calls(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response([asdict(c) for c in state.calls])


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"reset": True})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(latency: dict[str, LatencyModel] | None = None) -> web.Application:
    """Return the aiohttp application of the mock provider with a fresh state (each provider's latency model after resets)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = MockState(latency)
    for prefix in ("", "/v1", "/api/v1"):
        app.router.add_post(f"{prefix}/chat/completions", openai_chat)
        app.router.add_get(f"{prefix}/models", openai_models)
    app.router.add_post("/v1/messages", anthropic_messages)
    app.router.add_post(r"/{version:v1beta|v1}/models/{model}:{method:generateContent|streamGenerateContent}", gemini_generate)
    app.router.add_post("/__mock/behaviour", set_behaviour)
    app.router.add_get("/__mock/calls", get_calls)
    app.router.add_post("/__mock/reset", reset)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Mock LLM provider (OpenAI, Anthropic, Gemini wire formats)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument(
        "--latency", choices=("none", "realistic"), default="none", help="realistic: answer as real models do (REALISTIC)"
    )
    args = parser.parse_args()
    latency = REALISTIC if args.latency == "realistic" else None
    web.run_app(make_app(latency), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
