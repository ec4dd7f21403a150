"""Run the plan's scenarios against a gateway while watching the stack; return the judged report.

Each scenario is one Locust run in a child process (ops.loadtest.locust_run: Locust patches the
standard library with gevent on import, which must not happen in the ops process), started with the
stack watched (ops.loadtest.watch) and judged by ops.loadtest.report.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ops.config import Settings
from ops.errors import OpsError, ServiceError
from ops.loadtest.report import LoadReport, ScenarioResult
from ops.loadtest.scenarios import Scenario, pick
from ops.loadtest.watch import DockerWatch, ProcessWatch, Watch

PROMPT = "Test"  # the plan's locustfile sends this
MODEL = "gpt-4"
STREAM_RATIO = 0.5  # OpenCode and the SDKs stream, n8n and the Telegram bot do not
REQUEST_TIMEOUT = 60.0
MOCK_MARK = "[mock "  # how every answer of ops.local.mock_provider starts


@dataclass(frozen=True)
class Gateway:
    """The gateway under load: its URL and a key it accepts."""

    url: str
    key: str


def probe(gateway: Gateway, model: str, allow_real_providers: bool = False) -> None:
    """Send one request; raise ServiceError if the gateway does not answer it, OpsError if a real provider did.

    A real provider answering means the load would spend the provider budgets (and, spent, stop the
    gateway for the day): refused unless allow_real_providers.
    """
    try:
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {gateway.key}"},
            json={"model": model, "messages": [{"role": "user", "content": PROMPT}]},
            timeout=REQUEST_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        raise ServiceError(f"the gateway at {gateway.url} is unreachable: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise ServiceError(f"the gateway at {gateway.url} answered {response.status_code} to one request: {response.text[:200]}")
    answer = str((response.json().get("choices") or [{}])[0].get("message", {}).get("content") or "")
    if not answer.startswith(MOCK_MARK) and not allow_real_providers:
        raise OpsError(
            f"the gateway at {gateway.url} answered from a real provider: the load test would spend the provider budgets; "
            "point its *_API_BASE at the mock provider (docs/PERFORMANCE.md, 'Load test'), or pass --real-providers"
        )


def run_locust(gateway: Gateway, scenario: Scenario, model: str, stream_ratio: float) -> dict[str, Any]:
    """Run one scenario with Locust in a child process; return what it measured.

    Locust's progress goes to this process's stderr. Raise ServiceError if Locust fails or overruns.
    """
    spec = {
        "url": gateway.url,
        "key": gateway.key,
        "model": model,
        "prompt": PROMPT,
        "users": scenario.users,
        "seconds": scenario.seconds,
        "stream_ratio": stream_ratio,
        "timeout": REQUEST_TIMEOUT,
    }
    with tempfile.TemporaryDirectory(prefix="aistack-loadtest-") as tmp:
        spec_file, out_file = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_file.write_text(json.dumps(spec))
        spec_file.chmod(0o600)  # it holds the gateway's key
        argv = [sys.executable, "-m", "ops.loadtest.locust_run", str(spec_file), str(out_file)]
        try:
            # stdout to stderr (fd 2) as well: a --json report on stdout stays clean
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=2, timeout=scenario.seconds + REQUEST_TIMEOUT + 60)
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"Locust did not finish the {scenario.name} scenario in time") from exc
        if proc.returncode != 0 or not out_file.exists():
            raise ServiceError(f"Locust failed in the {scenario.name} scenario (exit {proc.returncode}; its errors are above)")
        result: dict[str, Any] = json.loads(out_file.read_text())
        return result


def run_scenarios(
    gateway: Gateway,
    scenarios: list[Scenario],
    watch: Callable[[], Watch],
    *,
    scale: float = 1.0,
    vm_memory_mb: int | None = None,
    model: str = MODEL,
    stream_ratio: float = STREAM_RATIO,
    allow_real_providers: bool = False,
    probe_first: bool = True,
    time_factor: float = 1.0,
) -> LoadReport:
    """Probe the gateway, then run each scenario with a fresh watch of the stack; return the report.

    Raise ServiceError if the gateway does not answer the probe or Locust fails, OpsError if a real
    provider answers and allow_real_providers is off. Without probe_first (a test whose mock fails on
    purpose) the load starts at once.
    """
    if probe_first:
        probe(gateway, model, allow_real_providers)
    results = []
    for scenario in scenarios:
        with watch() as watching:
            measured = run_locust(gateway, scenario, model, stream_ratio)
        results.append(
            ScenarioResult(
                scenario,
                float(measured["seconds"]),
                int(measured["requests"]),
                int(measured["failures"]),
                float(measured["p50_ms"]),
                float(measured["p95_ms"]),
                float(measured["p99_ms"]),
                float(measured["max_ms"]),
                dict(measured["errors_by_status"]),
                tuple(measured["error_samples"]),
                tuple(watching.usages()),
                watching.stack_peak_mb,
                vm_memory_mb,
                time_factor,
            )
        )
    return LoadReport(gateway.url, model, scale, tuple(results))


def compose_limits(settings: Settings) -> dict[str, float | None]:
    """Each service's memory limit in the compose file (MB), for the processes that stand in for them locally."""
    from ops.stack import load_stack

    if not settings.compose_file.exists():
        return {}
    return {s.name: s.memory_mb for s in load_stack(settings.compose_file).services}


@dataclass(frozen=True)
class LocalGateway:
    """A gateway started here (local_gateway): where it answers, where its mock provider is, and a watch of it."""

    gateway: Gateway
    mock_url: str
    pids: dict[str, int]
    limits_mb: dict[str, float | None]

    def watch(self) -> Watch:
        return ProcessWatch(self.pids, self.limits_mb)


@contextlib.contextmanager
def local_gateway(
    settings: Settings, langfuse_url: str = "", langfuse_keys: tuple[str, str] = ("", "")
) -> Iterator[LocalGateway]:
    """Start the gateway here: Redis, the mock provider answering as real models, LiteLLM with the project's config.

    Its watch covers LiteLLM's and Redis's processes, judged against their compose limits. Without
    langfuse_url nothing is traced (as in `ops demo`). Raise ServiceError if a service does not start.
    """
    from ops.local.processes import LiteLLMServer, MockProviderServer, RedisServer

    with MockProviderServer() as mock, RedisServer() as redis:
        for provider in ("openai", "anthropic", "gemini", "openrouter"):
            # {}: the provider's realistic time to first token and token rate (ops.local.mock_provider.REALISTIC)
            httpx.post(f"{mock.url}/__mock/behaviour", json={"provider": provider, "latency": {}}, timeout=5).raise_for_status()
        env = {**mock.provider_env(), "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis.port), "REDIS_PASSWORD": redis.password}
        if langfuse_url:
            env |= {
                "LANGFUSE_HOST": langfuse_url,
                "LANGFUSE_PUBLIC_KEY": langfuse_keys[0],
                "LANGFUSE_SECRET_KEY": langfuse_keys[1],
            }
        with LiteLLMServer(settings.litellm_config, env) as litellm:
            pids = {"litellm": litellm.pid, "redis": redis.pid}
            yield LocalGateway(Gateway(litellm.url, litellm.master_key), mock.url, pids, compose_limits(settings))


def run_loadtest(
    settings: Settings,
    scenarios: tuple[str, ...] = (),
    scale: float = 1.0,
    local: bool = False,
    allow_real_providers: bool = False,
) -> LoadReport:
    """Run the plan's scenarios (all, or those named) at scale against the stack's gateway; return the judged report.

    The stack's gateway is OPS_GATEWAY_URL (default 127.0.0.1:4000) with LITELLM_MASTER_KEY, its compose
    project's containers watched through Docker; with local, a gateway started here (local_gateway).
    Raise OpsError for an unknown scenario or a bad scale, ConfigError for unsafe secrets, ServiceError
    if the gateway or Docker cannot be reached.
    """
    from ops.runtime.compose import Compose
    from ops.slices.base import Target

    picked = pick(scenarios, scale)
    vm = settings.vm_memory_mb if settings.effective_env.get("VM_MEMORY_MB") else None
    if local:
        with local_gateway(settings) as started:
            gateway, watch, factor = started.gateway, started.watch, settings.verify_time_factor
            return run_scenarios(
                gateway,
                picked,
                watch,
                scale=scale,
                vm_memory_mb=vm,
                allow_real_providers=allow_real_providers,
                time_factor=factor,
            )
    target = Target.from_settings(settings)
    compose = Compose.for_settings(settings)
    return run_scenarios(
        Gateway(target.gateway_url, target.master_key),
        picked,
        lambda: DockerWatch(compose),
        scale=scale,
        vm_memory_mb=vm,
        allow_real_providers=allow_real_providers,
        time_factor=target.time_factor,
    )
