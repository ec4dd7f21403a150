"""`ops loadtest` for real, scaled to seconds: Locust against the real LiteLLM with the shipped config.

One gateway for the module (ops.loadtest.runner.local_gateway: the mock provider answering as real models,
Redis, LiteLLM, tracing to the Langfuse fake). What is asserted is the report's structure, that Locust ran,
that errors are counted by status and judged; never how fast anything was (this machine is shared).
The test that makes the mock fail runs last: the cooldowns it causes stay in that gateway.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web

from ops.config import load_settings
from ops.errors import OpsError
from ops.loadtest.runner import Gateway, LocalGateway, local_gateway, probe, run_scenarios
from ops.loadtest.scenarios import pick
from ops.loadtest.watch import ProcessWatch
from tests.conftest import REPO
from tests.fakes.langfuse import make_app as make_langfuse
from tests.fakes.server import ThreadedServer
from tests.integration.test_gateway import LANGFUSE_KEYS

pytestmark = pytest.mark.integration
SCALE = 0.005  # steady 2 s (the floor), spike 2 s, sustained 9 s


@pytest.fixture(scope="module")
def local() -> Iterator[LocalGateway]:
    with (
        ThreadedServer(make_langfuse(*LANGFUSE_KEYS)) as langfuse,
        local_gateway(load_settings(REPO), langfuse.url, LANGFUSE_KEYS) as started,
    ):
        yield started


def test_the_scaled_scenarios_run_with_locust_and_are_judged(local: LocalGateway) -> None:
    report = run_scenarios(local.gateway, pick(("steady", "spike"), SCALE), local.watch, scale=SCALE, vm_memory_mb=4096)
    data = report.to_dict()
    assert [s["name"] for s in data["scenarios"]] == ["steady", "spike"]
    for scenario in data["scenarios"]:
        assert scenario["requests"] > 0  # Locust ran and its requests reached the gateway
        assert scenario["errors_by_status"] == {} and scenario["failures"] == 0
        # Locust's percentiles are rounded (to 100 ms above 1 s), so p99 may sit above the exact maximum
        assert 0 < scenario["p50_ms"] <= scenario["p95_ms"] <= scenario["p99_ms"] and scenario["max_ms"] > 0
        usage = {u["name"]: u for u in scenario["usage"]}
        assert set(usage) == {"litellm", "redis"}
        assert usage["litellm"]["limit_mb"] == 448  # the compose file's limit for the gateway
        assert usage["litellm"]["peak_memory_mb"] > 100 and usage["litellm"]["cpu_seconds"] > 0
        assert usage["litellm"]["restarts"] == 0
        verdicts = {c["name"]: c["ok"] for c in scenario["criteria"]}
        assert verdicts["load ran"] and verdicts["no 5xx"] and verdicts["no restarts"] and verdicts["memory under 90%"]
    mock_calls = httpx.get(f"{local.mock_url}/__mock/calls", timeout=5).json()
    assert {c["stream"] for c in mock_calls} == {True, False}  # streamed and plain requests, as clients send them


def test_a_gateway_that_answers_from_a_real_provider_is_refused(local: LocalGateway) -> None:
    """The probe's answer does not start with the mock's mark: the load would spend real budgets."""
    with ThreadedServer(_real_looking_gateway()) as fake:
        with pytest.raises(OpsError, match="answered from a real provider"):
            probe(Gateway(fake.url, "k"), "gpt-4")
        probe(Gateway(fake.url, "k"), "gpt-4", allow_real_providers=True)


def _real_looking_gateway() -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": "Hello! How can I help?"}}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


def test_a_process_that_exits_while_watched_counts_as_a_restart() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    with ProcessWatch({"me": os.getpid(), "child": child.pid}, {"me": 100_000}) as watch:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)
    usages = {u.name: u for u in watch.usages()}
    assert (usages["child"].restarts, usages["child"].problem) == (1, "exited")
    assert (usages["me"].restarts, usages["me"].limit_mb) == (0, 100_000)
    assert usages["me"].peak_memory_mb > 0 and watch.stack_peak_mb >= usages["me"].peak_memory_mb


def test_neither_the_cli_nor_the_slices_import_locust() -> None:
    """Locust monkey-patches the standard library with gevent on import: only its own child process may import it."""
    code = "import sys, ops.cli, ops.loadtest.runner, ops.slices; print(sorted({'locust', 'gevent'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == "[]"


def test_the_probe_names_a_gateway_that_refuses_the_key(local: LocalGateway) -> None:
    with pytest.raises(OpsError, match=r"answered 400 to one request: .*No connected db"):
        probe(Gateway(local.gateway.url, "sk-wrong"), "gpt-4")


def test_errors_are_counted_by_status_and_fail_the_run(local: LocalGateway) -> None:
    """Every provider fails 90 % of its calls with 500: the gateway's retries and fallbacks absorb some, cooldowns
    follow, and what reaches the clients is counted by status and judged. Last in the module (cooldowns stay)."""
    for provider in ("openai", "anthropic", "gemini", "openrouter"):
        behaviour = {"provider": provider, "status": 500, "status_ratio": 0.9, "latency": {"ttft_ms": 50}}
        httpx.post(f"{local.mock_url}/__mock/behaviour", json=behaviour, timeout=5).raise_for_status()
    report = run_scenarios(
        local.gateway, pick(("steady",), SCALE), local.watch, scale=SCALE, vm_memory_mb=4096, probe_first=False
    )
    steady = report.results[0]
    assert steady.requests > 0 and steady.failures > 0
    assert sum(steady.errors_by_status.values()) == steady.failures
    assert all(status.isdigit() and int(status) >= 400 for status in steady.errors_by_status)
    verdicts = {c.name: c.ok for c in steady.criteria()}
    assert verdicts["success rate over 99%"] is False
    assert verdicts["no 5xx"] is (steady.server_errors == 0)
    assert not report.ok and any(f.startswith("steady: success rate over 99%") for f in report.failed)
