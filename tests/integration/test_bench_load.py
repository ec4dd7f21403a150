"""The load generator and memory sampler that every benchmark uses, against the real mock provider."""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest

from ops.bench.load import RssSampler, closed_loop, tree_rss_mb
from ops.local.processes import MockProviderServer

pytestmark = pytest.mark.integration


@pytest.fixture
def mock(mock_provider: MockProviderServer) -> MockProviderServer:
    httpx.post(f"{mock_provider.url}/__mock/reset")
    return mock_provider


def test_closed_loop_counts_every_request(mock: MockProviderServer) -> None:
    result = closed_loop(f"{mock.url}/health", total=200, concurrency=8)
    assert (result.requests, result.errors, len(result.latencies_ms)) == (200, 0, 200)
    assert 0 < result.percentile(50) <= result.percentile(99)
    assert result.to_dict()["throughput_rps"] > 0


def test_closed_loop_reports_upstream_errors(mock: MockProviderServer) -> None:
    httpx.post(f"{mock.url}/__mock/behaviour", json={"provider": "openai", "status": 500})
    body = {"model": "gpt-5.4-2026-03-05", "messages": [{"role": "user", "content": "hi"}]}
    result = closed_loop(f"{mock.url}/v1/chat/completions", 40, 4, "POST", body, {"Authorization": "Bearer k"})
    assert result.errors == 40
    assert result.error_samples[0] == "HTTP 500"
    calls = httpx.get(f"{mock.url}/__mock/calls").json()
    assert len(calls) == 40 and calls[0]["provider"] == "openai"


def test_sampler_sees_a_child_process_tree_and_a_dead_pid_is_zero() -> None:
    child = subprocess.Popen(["python3", "-c", "x = bytearray(64 * 1024 * 1024); import time; time.sleep(2)"])
    with RssSampler(os.getpid(), interval=0.05) as sampler:
        child.wait()
    assert sampler.peak_mb > 64  # this process plus the child's 64 MiB
    assert tree_rss_mb(child.pid) == 0
