"""`ops bench gateway`: what the gateway costs, measured side by side in one run.

A mock upstream answers every chat completion after a fixed latency (50 ms).
The same closed-loop load runs straight at it and through LiteLLM, at each
concurrency, for two gateway configurations: the shipped litellm-config.yaml
(with Redis, as on the VPS) and LiteLLM with a minimal configuration (one
model, defaults). Reported: throughput, latency percentiles, the p50 latency
the gateway adds, errors, the gateway's peak memory and its CPU milliseconds per
request (user + system time of its process tree over the run). Tracing is
really sent: Langfuse's keys and host point at a sink that answers ingestion
207, as Langfuse does. Extra configurations (``extra_configs``, `--config
NAME=PATH`) run beside the two, in the same run, for before/after ratios;
``server_args`` (`--server-args NAME=ARGS`) start one of them with more
`litellm` options (another ASGI server, a log config), so that a server lever
is measured beside the same configuration under the default server.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from ops.bench.load import LoadResult, RssSampler, closed_loop, closed_loops_at_once
from ops.config import Settings
from ops.errors import OpsError
from ops.loadtest.watch import tree_cpu_seconds
from ops.local.processes import LiteLLMServer, MockProviderServer, RedisServer
from ops.stack import load_stack

UPSTREAM_LATENCY_MS = 50
# The paired run: every configuration at once, each at this concurrency, so that a machine busy with other work
# weighs on all of them alike (run after run, the CPU per request of one configuration moved by a quarter here)
PAIRED_CONCURRENCY = 10
MODEL = "gpt-4"
UPSTREAM_MODEL = "gpt-5.4-2026-03-05"


@dataclass(frozen=True)
class Run:
    target: str
    concurrency: int
    result: LoadResult
    peak_mb: float | None = None
    cpu_ms: float | None = None  # the gateway's CPU time per request over the run

    def to_dict(self) -> dict[str, Any]:
        data = {"target": self.target, "concurrency": self.concurrency, **self.result.to_dict()}
        if self.peak_mb is not None:
            data["peak_rss_mb"] = round(self.peak_mb, 1)
        if self.cpu_ms is not None:
            data["cpu_ms_per_request"] = round(self.cpu_ms, 2)
        return data


@dataclass(frozen=True)
class Paired:
    """One gateway's CPU per request while every configuration served the same load at the same time."""

    target: str
    result: LoadResult
    cpu_ms: float

    def to_dict(self, minimal_cpu_ms: float | None) -> dict[str, Any]:
        ratio = self.cpu_ms / minimal_cpu_ms if minimal_cpu_ms else None
        return {
            "target": self.target,
            "requests": self.result.requests,
            "errors": self.result.errors,
            "cpu_ms_per_request": round(self.cpu_ms, 2),
            "cpu_ratio_to_minimal": round(ratio, 2) if ratio is not None else None,
        }


@dataclass
class GatewayBench:
    upstream_latency_ms: int
    requests: int
    limit_mb: int | None
    runs: list[Run] = field(default_factory=list)
    paired: list[Paired] = field(default_factory=list)  # every configuration at once (PAIRED_CONCURRENCY each)
    stream: bool = False  # every request streamed (`--stream`): LiteLLM's per-chunk work is most of a streamed call's cost

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
            bare = next((r for r in self.runs if r.target == "gateway-minimal" and r.concurrency == run.concurrency), None)
            cpu_ratio = run.cpu_ms / bare.cpu_ms if bare and bare.cpu_ms and run.cpu_ms is not None else None
            rows.append(
                {
                    "target": run.target,
                    "concurrency": run.concurrency,
                    "throughput_ratio": round(ratio, 3),
                    "cpu_ms_per_request": round(run.cpu_ms, 2) if run.cpu_ms is not None else None,
                    "cpu_ratio_to_minimal": round(cpu_ratio, 2) if cpu_ratio is not None else None,
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
            "streamed": self.stream,
            "litellm_limit_mb": self.limit_mb,
            "runs": [r.to_dict() for r in self.runs],
            "comparisons": self.comparisons(),
            "paired": [p.to_dict(self.paired_minimal_cpu_ms) for p in self.paired],
        }

    @property
    def paired_minimal_cpu_ms(self) -> float | None:
        return next((p.cpu_ms for p in self.paired if p.target == "gateway-minimal"), None)


def parse_configs(specs: tuple[str, ...]) -> dict[str, Path]:
    """Given NAME=PATH strings, return {name: path}. Raise OpsError for a malformed one or a missing file."""
    configs = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise OpsError(f"--config takes NAME=PATH (a LiteLLM config), got {spec!r}")
        if not Path(path).is_file():
            raise OpsError(f"--config {name}: {path} is not a file")
        configs[name] = Path(path)
    return configs


def parse_server_args(specs: tuple[str, ...], names: set[str]) -> dict[str, tuple[str, ...]]:
    """Given NAME=ARGS strings and the configurations' names, return {name: args}.

    Raise OpsError for a malformed one, ARGS that do not split like a shell's, or a NAME no configuration has.
    """
    result = {}
    for spec in specs:
        name, sep, args = spec.partition("=")
        if not sep or not name or not args.strip():
            raise OpsError(f"--server-args takes NAME=ARGS (litellm options for configuration NAME), got {spec!r}")
        if name not in names:
            raise OpsError(f"--server-args {name}: no configuration of that name (have: {', '.join(sorted(names))})")
        try:
            result[name] = tuple(shlex.split(args))
        except ValueError as exc:
            raise OpsError(f"--server-args {name}: {args!r} does not split into options ({exc})") from exc
    return result


def minimal_config(shipped: Path, target: Path) -> Path:
    """Write LiteLLM's minimal configuration: the shipped gpt-4 deployment alone, every setting default."""
    data = yaml.safe_load(shipped.read_text(encoding="utf-8"))
    deployment = next(m for m in data["model_list"] if m["model_name"] == MODEL)
    target.write_text(
        yaml.safe_dump({"model_list": [deployment], "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}})
    )
    return target


def chat_body(model: str, stream: bool) -> dict[str, Any]:
    """Given a model and whether to stream, return the bench's chat completion request body."""
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Benchmark request: say hello."}]}
    if stream:
        body["stream"] = True
    return body


def _load(url: str, key: str, model: str, requests: int, concurrency: int, stream: bool = False) -> LoadResult:
    body = chat_body(model, stream)
    return closed_loop(f"{url}/v1/chat/completions", requests, concurrency, "POST", body, {"Authorization": f"Bearer {key}"})


class _IngestionSink(BaseHTTPRequestHandler):
    """Langfuse's ingestion endpoint as far as a client sees it: every batch accepted, 207 (as Langfuse answers)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as Langfuse's server: no new connection per batch

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        ids = [{"id": event.get("id", ""), "status": 201} for event in body.get("batch", [])]
        answer = json.dumps({"successes": ids, "errors": []}).encode()
        self.send_response(207)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _SinkServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a gateway that stops resets its kept-alive connection: nothing the benchmark must report


@contextlib.contextmanager
def langfuse_sink() -> Any:
    """Serve _IngestionSink on a loopback port in a thread; yield its base URL."""
    server = _SinkServer(("127.0.0.1", 0), _IngestionSink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _count(requests: int, concurrency: int) -> int:
    """Requests for one run: a fifth at concurrency 1, where each one waits for the upstream alone."""
    return requests if concurrency > 1 else max(1, requests // 5)


def _redis_env(stack: contextlib.ExitStack) -> dict[str, str]:
    """Start a Redis of its own for one gateway (on stack); return the REDIS_* variables that point there.

    A gateway's provider and deployment budgets count spend in Redis: sharing one across the configurations of a run,
    the bench's thousands of requests spent gpt-4's daily budget and the later configurations measured its fallbacks.
    """
    redis = stack.enter_context(RedisServer())
    return {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis.port), "REDIS_PASSWORD": redis.password}


def _paired(
    configs: dict[str, Path], env: dict[str, str], requests: int, args: dict[str, tuple[str, ...]], stream: bool = False
) -> list[Paired]:
    """Start every configuration, load them all at once; return each one's CPU per request."""
    with contextlib.ExitStack() as stack:
        gateways = {
            name: stack.enter_context(LiteLLMServer(config, env | _redis_env(stack), args=args.get(name, ())))
            for name, config in configs.items()
        }
        body = chat_body(MODEL, stream)
        urls = [f"{g.url}/v1/chat/completions" for g in gateways.values()]
        headers = [{"Authorization": f"Bearer {g.master_key}"} for g in gateways.values()]
        closed_loops_at_once(urls, 100, PAIRED_CONCURRENCY, body, headers)  # warm-up
        before = {name: tree_cpu_seconds(g.pid) for name, g in gateways.items()}
        results = closed_loops_at_once(urls, requests, PAIRED_CONCURRENCY, body, headers)
        return [
            Paired(name, result, (tree_cpu_seconds(g.pid) - before[name]) * 1000 / max(1, result.requests))
            for (name, g), result in zip(gateways.items(), results, strict=True)
        ]


def run_gateway_bench(
    settings: Settings,
    requests: int = 1000,
    concurrencies: tuple[int, ...] = (1, 20, 100),
    warmup: int = 50,
    extra_configs: tuple[str, ...] = (),
    server_args: tuple[str, ...] = (),
    stream: bool = False,
) -> GatewayBench:
    """Run the direct and gateway loads at each concurrency; return every run and the comparisons.

    extra_configs (NAME=PATH, a LiteLLM config) run after the shipped and minimal ones, as "gateway-NAME";
    server_args (NAME=ARGS) add litellm options to the configuration NAME (shipped, minimal or an extra one);
    stream sends every request (direct and through the gateways) with "stream": true.
    Raise OpsError for a malformed NAME=PATH or NAME=ARGS, ServiceError if a server does not start.
    """
    extra = parse_configs(extra_configs)
    args = {f"gateway-{name}": value for name, value in parse_server_args(server_args, {"shipped", "minimal", *extra}).items()}
    limit = load_stack(settings.compose_file).service("litellm").memory_mb if settings.compose_file.exists() else None
    bench = GatewayBench(UPSTREAM_LATENCY_MS, requests, limit, stream=stream)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aistack-bench-")))
        mock = stack.enter_context(MockProviderServer())
        httpx.post(
            f"{mock.url}/__mock/behaviour", json={"provider": "openai", "latency_ms": UPSTREAM_LATENCY_MS}
        ).raise_for_status()
        env = mock.provider_env()
        env |= {"LANGFUSE_HOST": stack.enter_context(langfuse_sink()), "LANGFUSE_PUBLIC_KEY": "pk-lf-bench"}
        env["LANGFUSE_SECRET_KEY"] = "sk-lf-bench"
        configs = {
            "gateway-shipped": settings.litellm_config,
            "gateway-minimal": minimal_config(settings.litellm_config, workdir / "minimal.yaml"),
            **{f"gateway-{name}": path for name, path in extra.items()},
        }
        for concurrency in concurrencies:
            _load(mock.url, "mock-openai-key", UPSTREAM_MODEL, warmup, concurrency, stream)
            direct = _load(mock.url, "mock-openai-key", UPSTREAM_MODEL, requests, concurrency, stream)
            bench.runs.append(Run("direct", concurrency, direct))
        bench.paired = _paired(configs, env, requests, args, stream)
        for name, config in configs.items():
            with contextlib.ExitStack() as own, LiteLLMServer(config, env | _redis_env(own), args=args.get(name, ())) as gateway:
                for concurrency in concurrencies:
                    _load(gateway.url, gateway.master_key, MODEL, warmup, concurrency, stream)
                    cpu_before = tree_cpu_seconds(gateway.pid)
                    with RssSampler(gateway.pid) as sampler:
                        result = _load(gateway.url, gateway.master_key, MODEL, _count(requests, concurrency), concurrency, stream)
                    cpu_ms = (tree_cpu_seconds(gateway.pid) - cpu_before) * 1000 / max(1, result.requests)
                    bench.runs.append(Run(name, concurrency, result, sampler.peak_mb, cpu_ms))
    return bench
