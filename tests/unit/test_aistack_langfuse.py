"""The batched Langfuse exporter LiteLLM loads from litellm-config.yaml (ops/gateway/callbacks/aistack_langfuse.py).

Real LiteLLM calls (``mock_response``: LiteLLM's own logging pipeline, no
provider) go through the exporter into the Langfuse contract fake, which
validates every event with the Langfuse SDK's models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import litellm
import pytest

from ops.gateway.callbacks.aistack_langfuse import LangfuseBatchExporter
from ops.local.processes import wait_until
from tests.fakes.langfuse import make_app
from tests.fakes.server import ThreadedServer

KEYS = ("pk-lf-unit", "sk-lf-unit")


@pytest.fixture(scope="module")
def langfuse() -> Iterator[ThreadedServer]:
    with ThreadedServer(make_app(*KEYS)) as server:
        yield server


def trace(langfuse: ThreadedServer, trace_id: str) -> dict[str, Any]:
    response = httpx.get(f"{langfuse.url}/api/public/traces/{trace_id}", auth=KEYS, timeout=10)
    return response.json() if response.status_code == 200 else {}


def generations(found: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in found.get("observations", []) if o["type"] == "GENERATION"]


async def complete(exporter: LangfuseBatchExporter, trace_id: str, answer: str | Exception) -> Exception | None:
    """Make one LiteLLM call answering answer; return the error it raised, once the exporter has queued the call."""
    metadata = {"trace_id": trace_id, "trace_name": "n8n litellm-route", "session_id": "s-1", "tags": ["route:gpt-4", "n8n"]}
    error = None
    try:
        await litellm.acompletion(
            model="openai/gpt-4o",
            messages=[{"role": "user", "content": "hello"}],
            metadata=metadata,
            callbacks=[exporter],
            mock_response=answer,
        )
    except Exception as exc:
        error = exc
    for _ in range(400):  # LiteLLM logs in a task after the answer: keep the loop running until it has
        if exporter.queued:
            break
        await asyncio.sleep(0.05)
    return error


def test_a_call_is_traced_with_name_tags_session_model_usage_and_cost(langfuse: ThreadedServer) -> None:
    exporter = LangfuseBatchExporter(langfuse.url, *KEYS)
    assert asyncio.run(complete(exporter, "unit-trace-ok", "hi there")) is None
    wait_until(lambda: bool(generations(trace(langfuse, "unit-trace-ok"))), 20, "the generation in the Langfuse fake")
    found = trace(langfuse, "unit-trace-ok")
    assert found["name"] == "n8n litellm-route" and found["sessionId"] == "s-1"
    assert {"route:gpt-4", "n8n"} <= set(found["tags"])
    [generation] = generations(found)
    assert generation["model"] == "gpt-4o" and generation["level"] == "DEFAULT"
    assert generation["promptTokens"] > 0 and generation["completionTokens"] > 0
    assert generation["calculatedTotalCost"] > 0 and generation["latency"] is not None
    assert exporter.dropped == 0


def test_a_failed_attempt_is_an_error_generation_in_the_same_trace(langfuse: ThreadedServer) -> None:
    exporter = LangfuseBatchExporter(langfuse.url, *KEYS)
    assert asyncio.run(complete(exporter, "unit-trace-error", Exception("upstream refused")))
    wait_until(lambda: bool(generations(trace(langfuse, "unit-trace-error"))), 20, "the failed generation in the Langfuse fake")
    [generation] = generations(trace(langfuse, "unit-trace-error"))
    assert generation["level"] == "ERROR" and "upstream refused" in generation["statusMessage"]


def test_queued_calls_go_in_one_batch(langfuse: ThreadedServer) -> None:
    exporter = LangfuseBatchExporter(langfuse.url, *KEYS)
    for n in range(5):  # queued as the event loop queues them, posted by flush as the thread would
        payload = {"trace_id": f"t{n}", "prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "response_cost": 1e-5}
        exporter.calls.put(
            ({"standard_logging_object": payload, "litellm_params": {"metadata": {"trace_id": f"unit-batch-{n}"}}}, "DEFAULT")
        )
    exporter.flush()
    assert exporter.sent_batches == 1
    assert all(generations(trace(langfuse, f"unit-batch-{n}")) for n in range(5))


def test_without_host_or_key_nothing_is_queued() -> None:
    for host, key in (("", KEYS[0]), ("http://127.0.0.1:9", "")):
        exporter = LangfuseBatchExporter(host, key, KEYS[1])
        exporter.enqueue({"standard_logging_object": {}}, "DEFAULT")
        assert not exporter.enabled and exporter.calls.empty() and exporter._thread is None


def test_flush_at_exit_sends_the_calls_the_thread_holds(langfuse: ThreadedServer) -> None:
    """`docker stop` right after a call (slice 5's drill recreates LiteLLM): the gathered calls still reach Langfuse."""
    exporter = LangfuseBatchExporter(langfuse.url, *KEYS)
    exporter.enqueue({"litellm_params": {"metadata": {"trace_id": "unit-exit"}}, "standard_logging_object": {}}, "ERROR")
    exporter.flush()  # what atexit calls
    assert generations(trace(langfuse, "unit-exit"))[0]["level"] == "ERROR"
    assert exporter._thread is not None and not exporter._thread.is_alive()
