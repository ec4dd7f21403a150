"""`ops bench scaling`: LiteLLM at one replica, then at two behind Caddy, under the same load in one run.

A throwaway compose project is made from the stack's own compose file (and the project's compose
overrides, OPS_COMPOSE_OVERRIDES) plus one file of ours: Redis, LiteLLM with the shipped
litellm-config.yaml, Caddy with the shipped Caddyfile, and the mock provider (ops.local.mock_provider,
run from this ops package in LiteLLM's image) in place of the LLM providers. The project has its own
name, secrets, loopback ports and volumes; the operator's stack is not touched, and `docker compose
down --volumes` removes it at the end. Caddy serves the LiteLLM site on plain HTTP (LITELLM_DOMAIN
http://127.0.0.1): the same `reverse_proxy` block, without TLS, whose cost is the same at one replica
and at two.

For each replica count (1, then `--scale litellm=2`) and each CPU set the stack's containers are held
to (`docker update --cpuset-cpus`; "0" stands for the one vCPU an e2-medium sustains, "0-1" for its
burst to two), two loads go through Caddy:

* concurrency 20, closed loop, the mock answering after a fixed 50 ms (what `ops bench gateway` uses):
  the gateway's capacity;
* the load test's spike users (Locust, 100 users, half streamed, the mock answering as real models do:
  ops.local.mock_provider.REALISTIC): what the plan's load test asks of it.

Reported: requests/s, p50/p95, errors, the requests each replica served (the mock records the caller's
address), and each replica's memory as PSS (its process tree, shared pages counted once) settled and
at its peak, with the ratios two replicas against one and a verdict against the VM's memory budget.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import ops
from ops.bench.load import LoadResult, RssSampler, closed_loop, tree_rss_mb
from ops.config import Settings
from ops.envfile import read_env_file
from ops.errors import OpsError, ServiceError
from ops.loadtest.runner import Gateway, run_locust
from ops.loadtest.scenarios import Scenario
from ops.local.processes import free_port, wait_until
from ops.memory import MemoryRow, total_for
from ops.runtime.compose import Compose
from ops.secrets import generate_secrets, render_env
from ops.stack import load_stack

MODEL = "gpt-4"
UPSTREAM_LATENCY_MS = 50  # the capacity load's fixed upstream latency, as in `ops bench gateway`
SPIKE_USERS = 100  # the load test's spike scenario (ops.loadtest.scenarios)
STREAM_RATIO = 0.5  # as the load test: half the users stream
WARMUP = 50
MOCK_PORT = 8099
# What the project must run for the bench: LiteLLM and what it needs, Caddy in front, the mock behind.
SERVICES = ("redis", "mock-provider", "litellm", "caddy")
PINNED = ("redis", "litellm", "caddy")  # the stack's containers: held to the CPU set under test

# Our override of the stack's compose file. source: docs.docker.com/reference/compose-file/merge (!reset, !override);
# compose-spec `cpuset`. LiteLLM publishes no port (the stack's 127.0.0.1:4000 binds once: a second replica could not
# start) and depends on Redis and the mock only (no Postgres: the gateway runs without its database). The mock runs
# in LiteLLM's own image (python3 and aiohttp are LiteLLM's) from this ops package, mounted read-only.
OVERRIDE = """# ops bench scaling: a throwaway project of the stack's compose file
services:
  redis:
    ports: !reset []
  litellm:
    ports: !reset []
    depends_on: !override
      redis:
        condition: service_healthy
      mock-provider:
        condition: service_healthy
    environment:
      OPENAI_API_BASE: http://mock-provider:{mock}/v1
      ANTHROPIC_API_BASE: http://mock-provider:{mock}
      GEMINI_API_BASE: http://mock-provider:{mock}/v1beta
      OPENROUTER_API_BASE: http://mock-provider:{mock}/api/v1
      LANGFUSE_HOST: ""  # no tracing, as on the VM by default (an override's Langfuse fake is not started here)
  caddy:
    ports: !override
      - "127.0.0.1:{caddy_port}:80"
  mock-provider:
    image: {image}
    entrypoint: ["python3", "-m", "ops.local.mock_provider", "--host", "0.0.0.0", "--port", "{mock}", "--latency", "realistic"]
    working_dir: /src
    volumes: !override
      - {ops_dir}:/src/ops:ro
    ports: !override
      - "127.0.0.1:{mock_port}:{mock}"
    networks: [edge]
    restart: "no"
    healthcheck:
      test: ["CMD", "python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{mock}/health', timeout=3)"]
      interval: 2s
      retries: 30
    deploy:
      resources:
        limits:
          memory: 256M
"""


def render_override(image: str, caddy_port: int, mock_port: int, ops_dir: Path) -> str:
    """Given LiteLLM's image, the loopback ports and the ops package's directory, return our compose override."""
    return OVERRIDE.format(image=image, caddy_port=caddy_port, mock_port=mock_port, ops_dir=ops_dir, mock=MOCK_PORT)


def bench_env(example_text: str) -> str:
    """Given vps.env.example's text, return the bench project's env file: fresh secrets, the mock's keys, no tracing.

    Caddy's LiteLLM site is plain HTTP on 127.0.0.1, the n8n site a .localhost name (no certificate is asked for).
    Raise ConfigError if the example lacks one of the variables set here.
    """
    values = generate_secrets() | {
        "COMPOSE_PROFILES": "",
        "OPS_COMPOSE_OVERRIDES": "",
        "LITELLM_DOMAIN": "http://127.0.0.1",
        "N8N_DOMAIN": "http://n8n.localhost",
        "LANGFUSE_DOMAIN": "",
        "LANGFUSE_HOST": "",  # tracing off, as on the VM by default (docker-compose.vps.yml) and in `ops loadtest --local`
        **{f"{p}_API_KEY": f"mock-{p.lower()}-key" for p in ("OPENAI", "ANTHROPIC", "GEMINI", "OPENROUTER")},
    }
    return render_env(example_text, values)


@dataclass(frozen=True)
class Replica:
    """One LiteLLM container: its id, its address on the compose network, and its main process on the host."""

    container_id: str
    address: str
    pid: int


def _docker(*args: str, timeout: float = 60) -> str:
    try:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise ServiceError("docker not found: the bench needs the Docker CLI and a local engine") from exc
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(f"docker {args[0]} did not finish within {timeout:g} s") from exc
    if proc.returncode != 0:
        raise ServiceError(f"docker {' '.join(args[:2])} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc.stdout


class ScalingStack:
    """The bench's compose project, up: Caddy's URL, the mock's URL, the master key, and the LiteLLM replicas."""

    def __init__(self, compose: Compose, caddy_url: str, mock_url: str, master_key: str) -> None:
        self.compose, self.caddy_url, self.mock_url, self.master_key = compose, caddy_url, mock_url, master_key

    def container_ids(self, service: str) -> list[str]:
        """Return the ids of service's running containers."""
        return self.compose.run("ps", "--quiet", service).stdout.split()

    def replicas(self) -> list[Replica]:
        """Return the running LiteLLM containers, in a stable order (by address)."""
        ids = self.container_ids("litellm")
        if not ids:
            return []
        found = []
        for item in json.loads(_docker("inspect", *ids)):
            networks = (item.get("NetworkSettings") or {}).get("Networks") or {}
            edge = next((n["IPAddress"] for name, n in networks.items() if name.endswith("_edge") and n.get("IPAddress")), "")
            found.append(Replica(item["Id"], edge, int((item.get("State") or {}).get("Pid") or 0)))
        return sorted(found, key=lambda r: tuple(int(part) for part in r.address.split(".") if part.isdigit()))

    def scale(self, replicas: int, timeout: int = 300) -> list[Replica]:
        """Run LiteLLM at this many replicas (the running ones kept), healthy; return them."""
        self.compose.run(
            "up", "--detach", "--wait", "--wait-timeout", str(timeout),
            "--no-recreate", "--scale", f"litellm={replicas}", "litellm",
            timeout=timeout + 120,
        )  # fmt: skip
        running = self.replicas()
        if len(running) != replicas:
            raise ServiceError(f"LiteLLM runs {len(running)} replica(s), {replicas} asked for")
        return running

    def pin(self, cpuset: str) -> None:
        """Hold the stack's containers (Redis, every LiteLLM replica, Caddy) to cpuset (docker update --cpuset-cpus)."""
        ids = [i for service in PINNED for i in self.container_ids(service)]
        _docker("update", "--cpuset-cpus", cpuset, *ids)

    def chat(self, content: str = "Scaling bench: say hello.", timeout: float = 60, model: str = MODEL) -> httpx.Response:
        """Send one chat completion for model through Caddy; return the response."""
        return httpx.post(
            f"{self.caddy_url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {self.master_key}"},
            json={"model": model, "messages": [{"role": "user", "content": content}]},
            timeout=timeout,
        )

    def mock(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """POST body to the mock's control path (GET without a body); return its JSON answer."""
        url = f"{self.mock_url}/__mock/{path}"
        response = httpx.post(url, json=body, timeout=10) if body is not None else httpx.get(url, timeout=10)
        response.raise_for_status()
        return response.json()

    def served(self, replicas: list[Replica]) -> list[int]:
        """Return how many provider calls each replica made since the mock's last reset (by the caller's address)."""
        peers = [str(call.get("peer", "")) for call in self.mock("calls")]
        return [peers.count(r.address) for r in replicas]


@contextlib.contextmanager
def scaling_stack(settings: Settings, replicas: int = 1, timeout: int = 300) -> Iterator[ScalingStack]:
    """Bring the bench's compose project up (LiteLLM at replicas behind Caddy, the mock behind it); yield it.

    It is taken down with its volumes on the way out. Raise OpsError if the project has no compose file or the
    engine is remote (memory is read from /proc), ServiceError if Docker fails or a service does not become healthy.
    """
    if not settings.compose_file.exists():
        raise OpsError(f"{settings.compose_file} not found: run the bench in the project directory (--project-dir)")
    if (settings.effective_env.get("DOCKER_HOST") or os.environ.get("DOCKER_HOST", "")).startswith("ssh://"):
        raise OpsError("ops bench scaling runs on the local Docker engine (it reads memory from /proc): unset DOCKER_HOST")
    workdir = Path(tempfile.mkdtemp(prefix="aistack-scaling-"))
    name = f"aistack-scaling-{uuid.uuid4().hex[:8]}"
    try:
        env_file = workdir / "bench.env"
        env_file.write_text(bench_env(settings.env_example.read_text(encoding="utf-8")), encoding="utf-8")
        env_file.chmod(0o600)
        base = Compose(settings.project_dir, (settings.compose_file, *settings.compose_overrides), env_file, name)
        image = json.loads(base.run("config", "--format", "json", "litellm").stdout)["services"]["litellm"]["image"]
        caddy_port, mock_port = free_port(), free_port()
        override = workdir / "compose.scaling.yml"
        override.write_text(render_override(image, caddy_port, mock_port, Path(ops.__file__).resolve().parent), encoding="utf-8")
        compose = Compose(base.project_dir, (*base.files, override), env_file, name)
        master_key = read_env_file(env_file)["LITELLM_MASTER_KEY"]
        stack = ScalingStack(compose, f"http://127.0.0.1:{caddy_port}", f"http://127.0.0.1:{mock_port}", master_key)
        try:
            up = ("up", "--detach", "--wait", "--wait-timeout", str(timeout), "--scale", f"litellm={replicas}", *SERVICES)
            compose.run(*up, timeout=timeout + 120)
            # Caddy answers once it has loaded the Caddyfile; LiteLLM behind it was healthy before (depends_on above)
            wait_until(lambda: stack.chat(timeout=10).status_code == 200, 60, "LiteLLM through Caddy")
            yield stack
        finally:
            compose.run("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class Memory:
    """One replica's PSS in MB: settled (after the loads) and the peak seen while they ran. None where unreadable."""

    settled_mb: float | None
    peak_mb: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pss_settled_mb": None if self.settled_mb is None else round(self.settled_mb, 1),
            "pss_peak_mb": None if self.peak_mb is None else round(self.peak_mb, 1),
        }


@dataclass(frozen=True)
class Measured:
    """One load at one replica count and CPU set: its figures and the requests each replica served."""

    load: str  # "c20" (the closed loop at its concurrency: "c" + the number) or "spike"
    replicas: int
    cpuset: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p95_ms: float
    served: tuple[int, ...]

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "load": self.load,
            "replicas": self.replicas,
            "cpuset": self.cpuset,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.p50_ms, 1),
            "p95_ms": round(self.p95_ms, 1),
            "served_per_replica": list(self.served),
        }


@dataclass
class ScalingBench:
    """Every measured load, each replica's memory, and the budget a second replica must fit in."""

    litellm_limit_mb: int | None
    budget_mb: int | None
    stack_total_mb: int | None  # the compose limits of the enabled profiles, LiteLLM counted once
    runs: list[Measured] = field(default_factory=list)
    memory: dict[int, list[Memory]] = field(default_factory=dict)  # replica count -> each replica's memory

    def run_for(self, load: str, replicas: int, cpuset: str) -> Measured | None:
        return next((r for r in self.runs if (r.load, r.replicas, r.cpuset) == (load, replicas, cpuset)), None)

    def ratios(self) -> list[dict[str, Any]]:
        """Two replicas against one, for each load and CPU set measured at both: throughput and p95."""
        rows = []
        for one in (r for r in self.runs if r.replicas == 1):
            two = self.run_for(one.load, 2, one.cpuset)
            if two is None:
                continue
            rows.append(
                {
                    "load": one.load,
                    "cpuset": one.cpuset,
                    "throughput_ratio": round(two.throughput / one.throughput, 2) if one.throughput else None,
                    "p95_ratio": round(two.p95_ms / one.p95_ms, 2) if one.p95_ms else None,
                }
            )
        return rows

    @property
    def added_mb(self) -> float | None:
        """The memory a second replica adds: the two replicas' peak PSS less the single one's."""
        one, two = self.memory.get(1), self.memory.get(2)
        if not one or not two or any(m.peak_mb is None for m in (*one, *two)):
            return None
        return sum(m.peak_mb or 0 for m in two) - sum(m.peak_mb or 0 for m in one)

    def verdict(self, cpuset: str = "0", gain: float = 1.25) -> str:
        """Given the CPU set that stands for the VM (one sustained vCPU) and the least throughput gain worth it,
        return whether a second replica is worth its memory, with the figures that decide it."""
        row = next((r for r in self.ratios() if r["load"] != "spike" and r["cpuset"] == cpuset), None)
        if row is None or row["throughput_ratio"] is None:
            return f"no verdict: the closed-loop load was not measured at 1 and 2 replicas on CPU set {cpuset}"
        ratio = float(row["throughput_ratio"])
        limit = self.litellm_limit_mb or 0
        room = (self.budget_mb - self.stack_total_mb) if self.budget_mb is not None and self.stack_total_mb is not None else None
        fits = room is not None and limit <= room
        added = f"{self.added_mb:.0f} MB PSS more at peak" if self.added_mb is not None else "its memory unread"
        budget = f"{limit} MB limit against {room} MB left in the budget" if room is not None else "no budget known"
        worth = ratio >= gain and fits
        return (
            f"{'worth it' if worth else 'not worth it'} on CPU set {cpuset}: two replicas served {ratio:.2f}x the "
            f"requests/s of one at concurrency {str(row['load'])[1:]} (at least {gain:.2f}x wanted), {added}; {budget}"
            f"{'' if fits else ' (does not fit)'}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "litellm_limit_mb": self.litellm_limit_mb,
            "budget_mb": self.budget_mb,
            "stack_total_mb": self.stack_total_mb,
            "runs": [r.to_dict() for r in self.runs],
            "ratios": self.ratios(),
            "memory": {str(n): [m.to_dict() for m in ms] for n, ms in self.memory.items()},
            "added_mb": None if self.added_mb is None else round(self.added_mb, 1),
            "verdict": self.verdict(),
        }

    def text(self) -> str:
        """Return the report as the CLI prints it: one line per load, then ratios, memory and the verdict."""
        lines = [f"{'load':<6}{'replicas':>9} {'cpus':<6}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'errors':>8}  served"]
        for r in self.runs:
            served = "/".join(str(n) for n in r.served)
            lines.append(
                f"{r.load:<6}{r.replicas:>9} {r.cpuset:<6}{r.throughput:>8.1f}"
                f"{r.p50_ms:>9.0f}{r.p95_ms:>9.0f}{r.errors:>8}  {served}"
            )
        for row in self.ratios():
            lines.append(f"{row['load']} on CPUs {row['cpuset']}: throughput {row['throughput_ratio']}x, p95 {row['p95_ratio']}x")
        for n, memories in sorted(self.memory.items()):
            each = ", ".join(
                "unreadable" if m.peak_mb is None else f"{m.settled_mb or 0:.0f} settled / {m.peak_mb:.0f} peak" for m in memories
            )
            lines.append(f"PSS at {n} replica(s), MB: {each}")
        lines.append(self.verdict())
        return "\n".join(lines)


def default_cpusets() -> tuple[str, ...]:
    """Return the CPU sets measured by default: "0" (an e2-medium's one sustained vCPU) and, with more CPUs, "0-1"."""
    return ("0", "0-1") if (os.cpu_count() or 1) > 1 else ("0",)


def check_cpusets(cpusets: tuple[str, ...], cpus: int) -> None:
    """Given CPU sets ("0", "0-1", "0,2") and the machine's CPU count, return if each names CPUs it has.

    Raise OpsError naming the first that does not (docker update would refuse it after the stack is up).
    """
    for cpuset in cpusets:
        parts = [part.split("-") for part in cpuset.split(",")] if re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", cpuset) else []
        if not parts or any(int(p[0]) > int(p[-1]) or int(p[-1]) >= cpus for p in parts):
            raise OpsError(f"--cpuset {cpuset!r} is not a set of this machine's CPUs (0 to {cpus - 1}, as 0 or 0-1 or 0,2)")


def _pss(pid: int) -> float | None:
    value = tree_rss_mb(pid)
    return value or None  # 0: /proc of another user's process is unreadable without root


def _closed(stack: ScalingStack, requests: int, concurrency: int) -> LoadResult:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Scaling bench: say hello."}]}
    headers = {"Authorization": f"Bearer {stack.master_key}"}
    return closed_loop(f"{stack.caddy_url}/v1/chat/completions", requests, concurrency, "POST", body, headers)


def _measure(
    stack: ScalingStack, replicas: list[Replica], cpuset: str, requests: int, concurrency: int, users: int, seconds: float
) -> tuple[list[Measured], list[float | None]]:
    """Run both loads on the replicas as pinned; return the figures and each replica's peak PSS."""
    samplers = [RssSampler(r.pid) for r in replicas]
    results = []
    with contextlib.ExitStack() as sampling:
        for sampler in samplers:
            sampling.enter_context(sampler)
        stack.mock("reset", {})
        stack.mock("behaviour", {"provider": "openai", "latency_ms": UPSTREAM_LATENCY_MS})
        _closed(stack, WARMUP, concurrency)
        stack.mock("reset", {})
        stack.mock("behaviour", {"provider": "openai", "latency_ms": UPSTREAM_LATENCY_MS})
        load = _closed(stack, requests, concurrency)
        results.append(
            Measured(
                f"c{concurrency}", len(replicas), cpuset, load.requests, load.errors, load.seconds,
                load.percentile(50), load.percentile(95), tuple(stack.served(replicas)),
            )
        )  # fmt: skip
        stack.mock("reset", {})  # every provider back to its realistic latency (the mock runs with --latency realistic)
        spike = run_locust(
            Gateway(stack.caddy_url, stack.master_key), Scenario("spike", users, seconds, 0.95), MODEL, STREAM_RATIO
        )
        results.append(
            Measured(
                "spike", len(replicas), cpuset, int(spike["requests"]), int(spike["failures"]), float(spike["seconds"]),
                float(spike["p50_ms"]), float(spike["p95_ms"]), tuple(stack.served(replicas)),
            )
        )  # fmt: skip
    return results, [s.peak_mb or None for s in samplers]


def run_scaling_bench(
    settings: Settings,
    requests: int = 1000,
    concurrency: int = 20,
    users: int = SPIKE_USERS,
    seconds: float = 30.0,
    cpusets: tuple[str, ...] = (),
) -> ScalingBench:
    """Measure LiteLLM at one replica and at two behind Caddy under the same loads; return the figures and verdict.

    cpusets: the CPU sets the stack's containers are held to, each measured at both replica counts (default
    default_cpusets()). Raise OpsError for a bad count, duration or CPU set, or a project without a compose file;
    ServiceError if Docker fails, a service does not come up, or Locust fails.
    """
    if requests < 1 or concurrency < 1 or users < 1 or seconds <= 0:
        raise OpsError("--requests, --concurrency and --users must be at least 1 and --seconds above 0")
    sets = cpusets or default_cpusets()
    check_cpusets(sets, os.cpu_count() or 1)
    if not settings.compose_file.exists():
        raise OpsError(f"{settings.compose_file} not found: run the bench in the project directory (--project-dir)")
    # the VM's budget against the compose file's own limits (the tests' overrides and their fakes left out)
    services = load_stack(settings.compose_file).services
    rows = [MemoryRow(s.name, s.memory_mb, s.profiles, s.one_shot) for s in services]
    enabled = tuple(p for p in settings.profiles if any(p in s.profiles for s in services))
    limit = next(s.memory_mb for s in services if s.name == "litellm")
    bench = ScalingBench(limit, settings.memory_budget_mb, total_for(rows, enabled))
    with scaling_stack(settings) as stack:
        for count in (1, 2):
            replicas = stack.scale(count)
            peaks: list[list[float | None]] = []
            for cpuset in sets:
                stack.pin(cpuset)
                measured, peak = _measure(stack, replicas, cpuset, requests, concurrency, users, seconds)
                bench.runs.extend(measured)
                peaks.append(peak)
            bench.memory[count] = [
                Memory(_pss(r.pid), max((x for p in peaks if (x := p[i]) is not None), default=None))
                for i, r in enumerate(replicas)
            ]
    return bench
