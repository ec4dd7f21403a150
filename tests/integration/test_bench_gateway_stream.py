"""`ops bench gateway --stream` streams every request: the CPU per request it reports is a streamed call's.

A streamed answer costs LiteLLM about twice a plain one (a pydantic object and the OpenAI SDK's parsing per chunk,
docs/PERFORMANCE.md), so the load test's streamed half needs its own figure; the mock's log shows what was asked.
"""

from __future__ import annotations

import httpx
import pytest

from ops.bench.gateway import UPSTREAM_MODEL, _load
from ops.local.processes import MockProviderServer

pytestmark = pytest.mark.integration


def test_a_streamed_load_asks_for_a_stream_on_every_request() -> None:
    with MockProviderServer() as mock:
        result = _load(mock.url, "mock-openai-key", UPSTREAM_MODEL, 4, 2, stream=True)
        calls = httpx.get(f"{mock.url}/__mock/calls").json()
    assert (result.requests, result.errors) == (4, 0)
    assert [c["stream"] for c in calls] == [True] * 4


def test_the_default_load_does_not_stream() -> None:
    with MockProviderServer() as mock:
        _load(mock.url, "mock-openai-key", UPSTREAM_MODEL, 2, 1)
        calls = httpx.get(f"{mock.url}/__mock/calls").json()
    assert [c["stream"] for c in calls] == [False] * 2
