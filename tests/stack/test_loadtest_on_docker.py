"""The load test on Docker: the gateway under the compose file's memory limits, the stack held to one CPU.

An e2-medium sustains about one vCPU, so the stack's containers share CPU 0 (cpuset); the mock provider
(standing in for the providers, which are not on the VM) answers as real models do, from CPU 1. Slice 12
verifies with the scaled scenarios, and `ops loadtest --json` runs one more as the operator would. What is
asserted is the shape of the result and the criteria that do not depend on this machine's speed.

The same stack then answers `ops health` by the VM's ways in (last: they stop Postgres's server and Redis).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from ops.local.processes import wait_until
from ops.slices import slice_12
from ops.slices.base import Target
from tests.stack.conftest import StackProject

pytestmark = pytest.mark.stack
SCALE = 0.002  # each scenario 2 s (the floor) but sustained 3.6 s
STACK = ("postgres", "postgres-init", "redis", "litellm")

# source: compose-spec services.cpuset ("explicit CPUs in which to permit execution"; docs.docker.com compose file
# reference), docker run --cpuset-cpus; the mock's --latency is ops/local/mock_provider.py's own flag
OVERRIDE = """services:
{stack}
  mock-provider:
    cpuset: "1"
    entrypoint: ["python3", "-m", "ops.local.mock_provider", "--host", "0.0.0.0", "--port", "8099", "--latency", "realistic"]
  langfuse-fake:
    cpuset: "1"
"""


@pytest.fixture(scope="module")
def loaded(module_stack_project: StackProject) -> Iterator[StackProject]:
    project = module_stack_project
    stack = "\n".join(f'  {name}:\n    cpuset: "0"' for name in STACK)
    (project.dir / "compose.loadtest.yml").write_text(OVERRIDE.format(stack=stack))
    project.overrides = (*project.overrides, "compose.loadtest.yml")
    env = project.dir / "vps.env"
    env.write_text(
        env.read_text().replace(
            "OPS_COMPOSE_OVERRIDES=compose.standin.yml", "OPS_COMPOSE_OVERRIDES=compose.standin.yml,compose.loadtest.yml"
        )
    )
    up = project.compose(
        "up", "--detach", "--wait", "--wait-timeout", "180", "mock-provider", "langfuse-fake", *STACK, check=False
    )
    if up.returncode != 0:
        logs = project.compose("logs", "--tail", "30", check=False).stdout
        pytest.fail(f"the stack did not come up for the load test:\n{up.stderr[-2000:]}\n{logs[-4000:]}")
    yield project


def test_slice_12_runs_the_scaled_scenarios_on_one_cpu(loaded: StackProject) -> None:
    for name in ("postgres", "redis", "litellm"):
        container = loaded.compose("ps", "--format", "{{.ID}}", name).stdout.strip()
        inspected = subprocess.run(
            ["docker", "inspect", "--format", "{{.HostConfig.CpusetCpus}}", container], capture_output=True, text=True, check=True
        )
        assert inspected.stdout.strip() == "0", name

    target = Target.from_settings(loaded.settings)
    checks = slice_12.verify(target, scale=SCALE)
    p95 = f"p95 under {3 * target.time_factor:g} s"  # the plan's 3 s times the tier's OPS_VERIFY_TIME_FACTOR
    assert [c.name for c in checks] == [
        f"{scenario}: {criterion}"
        for scenario, rate in (("steady", 99), ("spike", 95), ("sustained", 98))
        for criterion in ("load ran", f"success rate over {rate}%", "no 5xx", p95, "memory under 90%", "no restarts")
    ]
    verdicts = {c.name: c for c in checks}
    for scenario in ("steady", "spike", "sustained"):
        for criterion in ("load ran", "no restarts"):
            check = verdicts[f"{scenario}: {criterion}"]
            assert check.ok, check.detail
        assert "litellm" in verdicts[f"{scenario}: memory under 90%"].detail


def test_ops_loadtest_reports_every_container_of_the_project(loaded: StackProject) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "loadtest",
            "--project-dir",
            str(loaded.dir),
            *("--scenario", "spike", "--scale", str(SCALE)),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert "Aggregated" in proc.stderr  # Locust's stats lines while it ran
    report = json.loads(proc.stdout)
    (spike,) = report["scenarios"]
    assert spike["users"] == 100 and spike["requests"] > 0
    usage = {u["name"]: u for u in spike["usage"]}
    assert {"postgres", "redis", "litellm", "mock-provider", "langfuse-fake"} <= set(usage)
    assert usage["litellm"]["limit_mb"] == 448 and usage["litellm"]["peak_memory_mb"] > 0
    assert usage["litellm"]["cpu_seconds"] > 0 and usage["litellm"]["restarts"] == 0
    assert report["ok"] is (not report["failed"])
    assert proc.returncode == (0 if report["ok"] else 1)


def ops_health(project: StackProject, *args: str) -> tuple[int, dict[str, Any]]:
    """Run `ops health --json` as the operator does on the VM; return its exit code and report."""
    argv = [sys.executable, "-m", "ops.cli", "health", "--project-dir", str(project.dir), "--json", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout)


def test_ops_health_asks_postgres_in_its_container_and_redis_at_the_projects_address(loaded: StackProject) -> None:
    # Postgres: no OPS_POSTGRES_URL, so `docker compose exec` into the project's container; Redis: the published
    # port with the project's REDIS_PASSWORD (what the stack's requirepass checks)
    services = ("--only", "postgres", "--only", "redis", "--only", "litellm", "--timeout", "20")
    code, report = ops_health(loaded, *services)
    assert (code, report["down"]) == (0, []), report
    details = {r["name"]: r["detail"] for r in report["results"]}
    assert details["postgres"] == "SELECT 1 answered (docker compose exec)"
    assert details["redis"] == f"PONG from redis://:***@127.0.0.1:{loaded.redis_port}/0"

    loaded.compose("stop", "redis")
    try:
        code, report = ops_health(loaded, *services)
        assert code == 1 and "redis" in report["down"] and "postgres" not in report["down"], report
        redis_line = next(r for r in report["results"] if r["name"] == "redis")
        assert redis_line["detail"].startswith(f"cannot connect to Redis at redis://:***@127.0.0.1:{loaded.redis_port}/0")
    finally:
        loaded.compose("start", "redis")


def test_a_hung_postgres_keeps_no_psql_running_in_its_container(loaded: StackProject) -> None:
    """Killing `docker compose exec` at the timeout ends the client only (moby/moby#9098): the probe's psql must end
    inside the container, or a hung Postgres gathers one psql a minute from the alert check."""
    container = loaded.compose("ps", "--quiet", "postgres").stdout.strip()
    pid = loaded.compose("exec", "-T", "postgres", "sh", "-c", 'head -1 "$PGDATA/postmaster.pid"').stdout.strip()

    def signal(name: str) -> None:
        """Send name to the server: the image's PID 1, or the stand-in's child of runuser, which is PID 1 and stopped
        too: runuser continues a child that stops (source: util-linux login-utils/su-common.c, supervise_child)."""
        pid_1 = ["docker", "kill", "--signal", name, container]  # from outside: PID 1 ignores it from inside
        if name == "STOP":
            subprocess.run(pid_1, capture_output=True, check=True)
        if pid != "1":
            loaded.compose("exec", "-T", "postgres", "sh", "-c", f"kill -{name} {pid}")
        if name == "CONT":
            subprocess.run(pid_1, capture_output=True, check=True)

    def psql_running() -> bool:
        top = subprocess.run(["docker", "top", container], capture_output=True, text=True, check=True).stdout
        return any(re.search(r"\bpsql\b", line) for line in top.splitlines()[1:])

    assert not psql_running()
    signal("STOP")  # accepts connections in the kernel's backlog, answers none: a hung server
    try:
        code, report = ops_health(loaded, "--only", "postgres", "--timeout", "2")
        assert (code, report["down"]) == (1, ["postgres"]), report
        assert report["results"][0]["detail"].startswith("no answer within 2 s")  # the probe's, or the runner's
        wait_until(lambda: not psql_running(), 30, "the probe's psql to end in the container")
    finally:
        signal("CONT")
