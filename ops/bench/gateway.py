"""`ops bench gateway`: what the gateway costs, measured side by side in one run.

A mock upstream answers every chat completion after a fixed latency (50 ms).
The same closed-loop load runs straight at it and through LiteLLM, at each
concurrency, for two gateway configurations: the shipped litellm-config.yaml
(with Redis, as on the VPS) and LiteLLM with a minimal configuration (one
model, defaults). Reported: throughput, latency percentiles, the p50 latency
the gateway adds, errors, and the gateway's peak memory.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from ops.bench.load import LoadResult, RssSampler, closed_loop
from ops.config import Settings
from ops.local.processes import LiteLLMServer, MockProviderServer, RedisServer
from ops.stack import load_stack

UPSTREAM_LATENCY_MS = 50
MODEL = "gpt-4"
UPSTREAM_MODEL = "gpt-5.4-2026-03-05"


@dataclass(frozen=True)
class Run:
    target: str
    concurrency: int
    result: LoadResult
    peak_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {"target": self.target, "concurrency": self.concurrency, **self.result.to_dict()}
        if self.peak_mb is not None:
            data["peak_rss_mb"] = round(self.peak_mb, 1)
        return data


@dataclass
class GatewayBench:
    upstream_latency_ms: int
    requests: int
    limit_mb: int | None
    runs: list[Run] = field(default_factory=list)

    def run_for(self, target: str, concurrency: int) -> Run:
        return next(r for r in self.runs if r.target == target and r.concurrency == concurrency)

    def comparisons(self) -> list[dict[str, Any]]:
        """Each gateway run against the direct run at the same concurrency, with the targets checked."""
        rows = []
        for run in self.runs:
            if run.target == "direct":
                continue
            direct = self.run_for("direct", run.concurrency)
            ratio = run.result.throughput / direct.result.throughput if direct.result.throughput else 0.0
            added = run.result.percentile(50) - direct.result.percentile(50)
            rows.append(
                {
                    "target": run.target,
                    "concurrency": run.concurrency,
                    "throughput_ratio": round(ratio, 3),
                    "added_p50_ms": round(added, 1),
                    "errors": run.result.errors,
                    "peak_rss_mb": round(run.peak_mb or 0, 1),
                    "meets_throughput_target": run.concurrency != 20 or ratio >= 0.5,
                    "meets_latency_target": run.concurrency != 20 or added <= 30,
                    "meets_error_target": run.result.errors == 0,
                    "meets_memory_target": self.limit_mb is None or (run.peak_mb or 0) <= self.limit_mb,
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "upstream_latency_ms": self.upstream_latency_ms,
            "requests_per_run": self.requests,
            "litellm_limit_mb": self.limit_mb,
            "runs": [r.to_dict() for r in self.runs],
            "comparisons": self.comparisons(),
        }


def minimal_config(shipped: Path, target: Path) -> Path:
    """Write LiteLLM's minimal configuration: the shipped gpt-4 deployment alone, every setting default."""
    data = yaml.safe_load(shipped.read_text(encoding="utf-8"))
    deployment = next(m for m in data["model_list"] if m["model_name"] == MODEL)
    target.write_text(
        yaml.safe_dump({"model_list": [deployment], "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}})
    )
    return target


def _load(url: str, key: str, model: str, requests: int, concurrency: int) -> LoadResult:
    body = {"model": model, "messages": [{"role": "user", "content": "Benchmark request: say hello."}]}
    return closed_loop(f"{url}/v1/chat/completions", requests, concurrency, "POST", body, {"Authorization": f"Bearer {key}"})


def _count(requests: int, concurrency: int) -> int:
    """Requests for one run: a fifth at concurrency 1, where each one waits for the upstream alone."""
    return requests if concurrency > 1 else max(1, requests // 5)


def run_gateway_bench(
    settings: Settings, requests: int = 1000, concurrencies: tuple[int, ...] = (1, 20, 100), warmup: int = 50
) -> GatewayBench:
    """Run the direct and gateway loads at each concurrency; return every run and the comparisons.

    Raise ServiceError if a server does not start.
    """
    limit = load_stack(settings.compose_file).service("litellm").memory_mb if settings.compose_file.exists() else None
    bench = GatewayBench(UPSTREAM_LATENCY_MS, requests, limit)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aistack-bench-")))
        mock = stack.enter_context(MockProviderServer())
        httpx.post(
            f"{mock.url}/__mock/behaviour", json={"provider": "openai", "latency_ms": UPSTREAM_LATENCY_MS}
        ).raise_for_status()
        redis = stack.enter_context(RedisServer())
        env = {**mock.provider_env(), "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis.port), "REDIS_PASSWORD": redis.password}
        configs = {
            "gateway-shipped": settings.litellm_config,
            "gateway-minimal": minimal_config(settings.litellm_config, workdir / "minimal.yaml"),
        }
        for concurrency in concurrencies:
            _load(mock.url, "mock-openai-key", UPSTREAM_MODEL, warmup, concurrency)
            bench.runs.append(
                Run("direct", concurrency, _load(mock.url, "mock-openai-key", UPSTREAM_MODEL, requests, concurrency))
            )
        for name, config in configs.items():
            with LiteLLMServer(config, env) as gateway:
                for concurrency in concurrencies:
                    _load(gateway.url, gateway.master_key, MODEL, warmup, concurrency)
                    with RssSampler(gateway.pid) as sampler:
                        result = _load(gateway.url, gateway.master_key, MODEL, _count(requests, concurrency), concurrency)
                    bench.runs.append(Run(name, concurrency, result, sampler.peak_mb))
    return bench
