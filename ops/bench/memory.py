"""`ops bench memory`: resident memory of the stack's services, idle and under a bounded load.

Runs the real servers locally (PostgreSQL 18, Redis 7, Caddy, LiteLLM with
the project's config against the mock provider, and n8n when installed),
measures each process tree's RSS after it settles, then its peak while a
load generator of a fixed size runs against it. The figures feed the memory
budget in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops import tools
from ops.bench.load import LoadResult, RssSampler, closed_loop, tree_rss_mb
from ops.config import Settings
from ops.errors import ServiceError
from ops.local.demo import create_app_databases
from ops.local.processes import (
    CaddyServer,
    LiteLLMServer,
    MockProviderServer,
    N8nServer,
    PostgresServer,
    RedisServer,
)

SETTLE_SECONDS = 3.0


@dataclass(frozen=True)
class MemoryRow:
    service: str
    idle_mb: float
    load_mb: float
    load: str
    result: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "idle_mb": round(self.idle_mb, 1),
            "load_peak_mb": round(self.load_mb, 1),
            "load": self.load,
            "result": self.result,
        }


def _measure(service: str, pid: Callable[[], int], load: str, run: Callable[[], Any], settle: float) -> MemoryRow:
    time.sleep(settle)
    samples = []
    for _ in range(5):  # the settled floor: a garbage collector may still be catching up
        samples.append(tree_rss_mb(pid()))
        time.sleep(0.5)
    idle = min(samples)
    with RssSampler(pid()) as sampler:
        outcome = run()
    result = outcome.to_dict() if isinstance(outcome, LoadResult) else outcome
    return MemoryRow(service, idle, sampler.peak_mb, load, result)


def _command(argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise ServiceError(f"{Path(argv[0]).name} failed: {(proc.stdout + proc.stderr)[-400:]}")
    return {"seconds": round(time.perf_counter() - started, 2)}


def run_memory_bench(
    settings: Settings,
    requests: int = 2000,
    concurrency: int = 20,
    node: Path | None = None,
    n8n_dir: Path | None = None,
    settle: float = SETTLE_SECONDS,
) -> list[MemoryRow]:
    """Start each service, measure idle RSS and peak RSS under a fixed load; return one row each.

    n8n is measured when node and n8n_dir are given or scripts/install-n8n.sh installed it (ops.tools),
    idle and while the routing workflow serves tasks. Raise ServiceError if a service or a load tool fails.
    """
    rows: list[MemoryRow] = []
    with contextlib.ExitStack() as stack:
        postgres = stack.enter_context(PostgresServer())
        passwords = create_app_databases(settings.project_dir, postgres)
        pgbench = tools.postgres_bin("pgbench")
        if pgbench is None:
            raise ServiceError("pgbench not found (apt-get install postgresql)")
        env = {**os.environ, **postgres.libpq_env(), "PGDATABASE": "postgres"}
        _command([pgbench, "-i", "-q", "-s", "5"], env)
        clients = min(concurrency, 20)
        rows.append(
            _measure(
                "postgres",
                lambda: postgres.pid,
                f"pgbench TPC-B, {clients} clients x 200 transactions",
                lambda: _command([pgbench, "-c", str(clients), "-j", "2", "-t", "200", "-n"], env),
                settle,
            )
        )

        redis = stack.enter_context(RedisServer())
        benchmark = "redis-benchmark"
        rows.append(
            _measure(
                "redis",
                lambda: redis.pid,
                f"redis-benchmark SET/GET/XADD, {concurrency} clients x {requests * 10} requests",
                lambda: _command(
                    [
                        benchmark,
                        "-p",
                        str(redis.port),
                        "-a",
                        redis.password,
                        "-q",
                        "-c",
                        str(concurrency),
                        "-n",
                        str(requests * 10),
                        "-t",
                        "set,get,xadd",
                    ],
                    {**os.environ, "REDISCLI_AUTH": redis.password},
                ),
                settle,
            )
        )

        observer = stack.enter_context(_observer(settings, redis))
        rows.append(
            _measure(
                "observer",
                lambda: observer.pid,
                f"{requests // 10} events published, each decided and committed to git",
                lambda: _events_load(redis, requests // 10),
                settle,
            )
        )

        mock = stack.enter_context(MockProviderServer())
        caddy = stack.enter_context(CaddyServer(mock.url.removeprefix("http://")))
        rows.append(
            _measure(
                "caddy",
                lambda: caddy.pid,
                f"reverse proxy to the mock, {concurrency} concurrent x {requests} GET",
                lambda: closed_loop(f"{caddy.url}/v1/models", requests, concurrency),
                settle,
            )
        )

        litellm_env = {
            **mock.provider_env(),
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(redis.port),
            "REDIS_PASSWORD": redis.password,
        }
        gateway = stack.enter_context(LiteLLMServer(settings.litellm_config, litellm_env))
        body = {"model": "gpt-4", "messages": [{"role": "user", "content": "Explain the memory budget."}]}
        rows.append(
            _measure(
                "litellm",
                lambda: gateway.pid,
                f"chat completions (gpt-4 via the mock), {concurrency} concurrent x {requests // 2}",
                lambda: closed_loop(
                    f"{gateway.url}/v1/chat/completions",
                    requests // 2,
                    concurrency,
                    "POST",
                    body,
                    {"Authorization": f"Bearer {gateway.master_key}"},
                ),
                settle,
            )
        )

        installed = (node, n8n_dir) if node is not None and n8n_dir is not None else tools.n8n_install()
        if installed is not None:
            n8n = stack.enter_context(N8nServer(*installed, postgres, passwords["n8n"]))
            url, headers = _routing_workflow(settings, n8n, gateway)
            tasks = max(requests // 10, concurrency)
            rows.append(
                _measure(
                    "n8n",
                    lambda: n8n.pid,
                    f"the routing workflow (webhook, Code, LiteLLM, mock), {concurrency} concurrent x {tasks} tasks",
                    lambda: _served(
                        closed_loop(url, tasks, concurrency, "POST", {"task": "Explain the memory budget."}, headers)
                    ),
                    max(settle, 45.0),  # start-up (migrations, task runner) peaks near 700 MB, then GC settles
                )
            )
    return rows


def _served(result: LoadResult) -> LoadResult:
    """Given the workflow's load, return it. Raise ServiceError if requests failed: memory under errors means little."""
    if result.errors:
        raise ServiceError(f"the routing workflow failed {result.errors} of {result.requests} tasks: {result.error_samples[:2]}")
    return result


def _routing_workflow(settings: Settings, n8n: N8nServer, gateway: LiteLLMServer) -> tuple[str, dict[str, str]]:
    """Deploy workflows/litellm-router.json into n8n against gateway, as slice 4 does; return its URL and headers."""
    import secrets

    from ops.workflows import router
    from ops.workflows.n8n import LocalN8n, deploy

    key = secrets.token_hex(16)
    workflow = router.for_n8n(router.load_workflow(router.workflow_path(settings)), gateway.url)
    deploy(LocalN8n(n8n), workflow, router.credentials(key, gateway.master_key, gateway.url))
    return f"{n8n.url}/webhook/{router.WEBHOOK_PATH}", {router.WEBHOOK_HEADER: key}


@contextlib.contextmanager
def _observer(settings: Settings, redis: RedisServer) -> Iterator[subprocess.Popen[bytes]]:
    """Run `ops observer run` as its own process on redis, committing to a fresh local repository."""
    from ops.secrets import scratch_project

    with tempfile.TemporaryDirectory() as tmp:
        project, truth = scratch_project(settings.env_example, Path(tmp) / "project"), Path(tmp) / "truth"
        subprocess.run(["git", "init", "-q", "-b", "main", str(truth)], check=True)
        env = {
            **os.environ,
            "OPS_REDIS_URL": redis.url,
            "OPS_EVENTS_REPO": str(truth),
            "OPS_EVENTS_REMOTE": "",
            "OPS_EVENTS_STATE_DIR": str(Path(tmp) / "state"),
        }
        argv = [sys.executable, "-m", "ops.cli", "observer", "run", "--project-dir", str(project)]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield proc
        finally:
            proc.terminate()
            proc.wait(30)


def _events_load(redis: RedisServer, count: int) -> dict[str, Any]:
    """Publish count low-risk events and wait until the observer has applied them all."""
    import redis as redis_py

    from ops.events.probe import probe_event
    from ops.events.publisher import Publisher

    client = redis_py.Redis.from_url(redis.url, decode_responses=True)
    started = time.perf_counter()
    publisher = Publisher(client)
    for version in range(1, count + 1):
        publisher.publish(probe_event("bench:memory", version, f"/tasks/t{version % 20}", n=version))
    deadline = time.monotonic() + 300
    while int(client.hget("agent_events:applied", "bench:memory") or 0) < count:
        if time.monotonic() > deadline:
            raise ServiceError("the observer did not apply the events within 300 s")
        time.sleep(0.2)
    client.close()
    return {"events": count, "seconds": round(time.perf_counter() - started, 2)}
