"""The load generator and memory sampler that every benchmark uses, against the real mock provider."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def own_pss_mb(pid: int) -> float:
    """The memory of pid alone, without its children."""
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    return sum(int(line.split()[1]) for line in rollup if line.startswith("Pss:")) / 1024


def test_sampler_sees_a_child_process_tree_and_a_dead_pid_is_zero() -> None:
    # the sampled process holds a few MiB; its child holds 64 MiB more, which only a sampler of the whole tree sees
    hold = "import sys; x = b'x' * (64 << 20); print('ready', flush=True); sys.stdin.read()"
    spawn = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {hold!r}])"
    parent = subprocess.Popen([sys.executable, "-c", spawn], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert parent.stdin is not None and parent.stdout is not None
    try:
        with RssSampler(parent.pid, interval=0.05) as sampler:
            assert parent.stdout.readline() == "ready\n"  # the child has its 64 MiB now; leaving takes a last sample
        assert own_pss_mb(parent.pid) < 32  # so 64 MiB can only come from the child
    finally:
        parent.stdin.close()  # the child reads EOF and exits, then the parent
        parent.wait(30)
    assert sampler.peak_mb >= 64
    assert tree_rss_mb(parent.pid) == 0
