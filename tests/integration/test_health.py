"""`ops health` against real services: Postgres 18, Redis 7, LiteLLM, the observer, Caddy with the shipped Caddyfile.

Langfuse and Qdrant are their contract fakes (tests/fakes). A listening socket that never answers stands in
for a hung service. One LiteLLM, Redis and set of fakes for the module; a test that stops a service takes its own.
n8n answers its readiness probe in tests/integration/test_n8n_router.py, where a real n8n already runs.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import bcrypt
import httpx
import pytest
import redis

from ops import tools
from ops.config import Settings
from ops.envfile import read_env_file
from ops.events.consumer import Consumer
from ops.events.observer import Observer, Policy
from ops.events.publisher import Streams
from ops.events.reconciler import Reconciler
from ops.health import HealthReport, run_health
from ops.local.processes import LOOPBACK, LiteLLMServer, MockProviderServer, PostgresServer, RedisServer, free_port, wait_until
from tests.conftest import REPO, require
from tests.fakes.langfuse import make_app as make_langfuse
from tests.fakes.qdrant import QdrantState, qdrant_app
from tests.fakes.server import ThreadedServer

pytestmark = pytest.mark.integration

STREAM = "health_events"
CORE = ("litellm", "langfuse", "qdrant", "postgres", "redis", "observer")  # n8n: test_n8n_router.py; caddy: below
SLACK = 10.0  # seconds each service has where the test is about answers, not time: a loaded machine is slow


@pytest.fixture(scope="module")
def redis_module() -> Iterator[RedisServer]:
    require(tools.redis_server(), "redis-server (apt-get install redis-server)")
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(mock_provider: MockProviderServer, redis_module: RedisServer) -> Iterator[LiteLLMServer]:
    env = {**mock_provider.provider_env(), "REDIS_HOST": LOOPBACK, "REDIS_PORT": str(redis_module.port)}
    with LiteLLMServer(REPO / "litellm-config.yaml", {**env, "REDIS_PASSWORD": redis_module.password}) as server:
        yield server


@dataclass
class Fakes:
    langfuse: ThreadedServer
    qdrant: ThreadedServer
    qdrant_state: QdrantState


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    state = QdrantState("qdrant-key")
    with ThreadedServer(make_langfuse("pk-lf-health", "sk-lf-health")) as langfuse, ThreadedServer(qdrant_app(state)) as qdrant:
        yield Fakes(langfuse, qdrant, state)


@pytest.fixture(scope="module")
def hung() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers: a hung service."""
    listener = socket.socket()
    listener.bind((LOOPBACK, 0))
    listener.listen(64)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


class QuickConsumer(Consumer):
    def poll(self, block_ms: int = 2000) -> int:
        return super().poll(block_ms=min(block_ms, 50))  # stops within 50 ms, not the observer's 1 s


@pytest.fixture(scope="module")
def observer(redis_module: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observer]:
    """The real observer polling the module's Redis on its own stream (an empty truth repository: nothing to commit)."""
    base = tmp_path_factory.mktemp("observer")
    subprocess.run(["git", "init", "-q", "-b", "main", str(base / "truth")], check=True)
    client = redis.Redis.from_url(redis_module.url, decode_responses=True)
    running = Observer(client, base / "state", Reconciler(base / "truth", Policy().roots), streams=Streams(STREAM))
    stop = threading.Event()
    consumer = QuickConsumer(client, running.handle, running.streams)
    thread = threading.Thread(target=running.run, args=(stop, consumer), daemon=True)
    thread.start()
    try:
        wait_until(lambda: bool(client.exists(running.heartbeat_key)), 30, "the observer's first heartbeat")
        yield running
    finally:
        stop.set()
        thread.join(10)
        client.close()


def settings_for(tmp_path: Path, **env: str) -> Settings:
    (tmp_path / "vps.env").touch()
    return Settings(tmp_path, env=env, example_env=read_env_file(REPO / "vps.env.example"), env_file_present=True)


@pytest.fixture
def stack_env(postgres: PostgresServer, redis_module: RedisServer, gateway: LiteLLMServer, fakes: Fakes) -> dict[str, str]:
    """Where each running service answers, as vps.env's OPS_* variables say it on the VM."""
    return {
        "OPS_GATEWAY_URL": gateway.url,
        "OPS_LANGFUSE_URL": fakes.langfuse.url,
        "OPS_QDRANT_URL": fakes.qdrant.url,
        "OPS_POSTGRES_URL": postgres.dsn(),
        "OPS_REDIS_URL": redis_module.url,
        "OPS_EVENTS_STREAM": STREAM,
        "COMPOSE_PROFILES": "events",
    }


def lines(report: HealthReport) -> dict[str, tuple[bool, str]]:
    return {r.name: (r.ok, r.detail) for r in report.results}


def test_every_running_service_answers_ready(tmp_path: Path, stack_env: dict[str, str], observer: Observer) -> None:
    report = run_health(settings_for(tmp_path, **stack_env), only=CORE, timeout=SLACK)

    assert report.ok, lines(report)
    seen = lines(report)
    assert '"status":"healthy"' in seen["litellm"][1]  # LiteLLM's readiness answer, not just any 200
    assert seen["postgres"][1].startswith("SELECT 1 answered (127.0.0.1:")
    assert seen["redis"][1].startswith("PONG from redis://:***@127.0.0.1:")  # never the password
    assert seen["observer"][1].startswith("last poll ")
    assert all(r.latency_ms > 0 for r in report.results)


def test_each_hung_service_is_down_at_its_timeout(tmp_path: Path, hung: int) -> None:
    at = f"127.0.0.1:{hung}"
    settings = settings_for(
        tmp_path,
        OPS_GATEWAY_URL=f"http://{at}",
        OPS_N8N_URL=f"http://{at}",
        OPS_QDRANT_URL=f"http://{at}",
        OPS_POSTGRES_URL=f"postgresql://postgres:pw@{at}/postgres",
        OPS_REDIS_URL=f"redis://:pw@{at}/0",
    )

    report = run_health(settings, timeout=1, only=("litellm", "n8n", "qdrant", "postgres", "redis"))

    assert report.down == ["litellm", "n8n", "qdrant", "postgres", "redis"]
    assert all(r.detail.startswith("no answer within 1 s") for r in report.results), lines(report)


def test_a_stopped_redis_and_an_observer_without_heartbeat_are_down_by_name(tmp_path: Path, redis_server: RedisServer) -> None:
    settings = settings_for(tmp_path, OPS_REDIS_URL=redis_server.url, OPS_EVENTS_STREAM="nobody", COMPOSE_PROFILES="events")

    report = run_health(settings, only=("redis", "observer"), timeout=SLACK)
    assert report.down == ["observer"]
    no_beat = "no heartbeat (nobody:observer:heartbeat in Redis) for 30 s: the observer is not polling"
    assert lines(report)["observer"][1] == no_beat

    redis_server.halt()
    report = run_health(settings, only=("redis", "observer"), timeout=SLACK)
    assert report.down == ["redis", "observer"]
    assert lines(report)["redis"][1].startswith(f"cannot connect to Redis at redis://:***@127.0.0.1:{redis_server.port}/0")


def test_qdrant_with_shards_not_ready_is_down(tmp_path: Path, stack_env: dict[str, str], fakes: Fakes) -> None:
    fakes.qdrant_state.ready = False
    try:
        report = run_health(settings_for(tmp_path, **stack_env), only=("qdrant",), timeout=SLACK)
    finally:
        fakes.qdrant_state.ready = True
    assert report.down == ["qdrant"]
    assert lines(report)["qdrant"][1] == f"HTTP 503 from {fakes.qdrant.url}/readyz: some shards are not ready"


def test_the_cli_exits_1_naming_redis_when_its_password_is_wrong(
    tmp_path: Path, stack_env: dict[str, str], redis_module: RedisServer
) -> None:
    (tmp_path / "vps.env.example").write_text((REPO / "vps.env.example").read_text())
    wrong = {**stack_env, "OPS_REDIS_URL": f"redis://:{quote('not-the-password')}@127.0.0.1:{redis_module.port}/0"}
    (tmp_path / "vps.env").write_text("".join(f"{k}={v}\n" for k, v in wrong.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPS_")}

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "health",
            "--project-dir",
            str(tmp_path),
            "--json",
            "--timeout",
            str(SLACK),
            *[arg for name in CORE for arg in ("--only", name)],
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )

    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["down"] == ["redis", "observer"]  # the observer's heartbeat is read with the same password
    redis_line = next(r for r in data["results"] if r["name"] == "redis")
    assert "refused the password" in redis_line["detail"]
    assert "not-the-password" not in proc.stdout


@dataclass(frozen=True)
class Caddy:
    port: int
    root: Path  # the internal CA's root certificate, what a client must trust
    password: str


@pytest.fixture(scope="module")
def caddy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Caddy]:
    """The shipped Caddyfile on the real Caddy, its three sites on one loopback HTTPS port as *.localhost names.

    Caddy's internal CA signs their certificates; ``skip_install_trust`` keeps it out of this machine's trust store.
    The upstreams (n8n, litellm, langfuse-web) do not resolve here: what Caddy lets through answers 502 (LiteLLM's
    site 503: Caddy looks its replicas up, and finds none).
    """
    program = tools.caddy()
    require(program, "caddy")
    assert program is not None
    base = tmp_path_factory.mktemp("caddy")
    shipped = (REPO / "Caddyfile").read_text()
    assert shipped.count("\tadmin localhost:2019\n") == 1
    (base / "Caddyfile").write_text(shipped.replace("\tadmin localhost:2019\n", "\tadmin localhost:2019\n\tskip_install_trust\n"))
    port, password = free_port(), "correct-horse-battery"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(base),
        "XDG_DATA_HOME": str(base),
        "XDG_CONFIG_HOME": str(base),
        "ACME_EMAIL": "ops@aistack.dev",
        "N8N_DOMAIN": f"n8n.aistack.localhost:{port}",
        "LANGFUSE_DOMAIN": f"langfuse.aistack.localhost:{port}",
        "LITELLM_DOMAIN": f"llm.aistack.localhost:{port}",
        "BASIC_AUTH_USER": "admin",
        "BASIC_AUTH_HASH": bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode(),
    }
    root = base / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    with (base / "caddy.log").open("wb") as log:
        proc = subprocess.Popen(
            [program, "run", "--config", str(base / "Caddyfile"), "--adapter", "caddyfile"], env=env, stdout=log, stderr=log
        )
    try:

        def serving() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"caddy exited: {(base / 'caddy.log').read_text()[-2000:]}")
            if not root.exists():
                return False
            with httpx.Client(verify=ssl.create_default_context(cafile=str(root)), timeout=2) as client:
                response = client.get(
                    f"https://127.0.0.1:{port}/health/liveliness",
                    headers={"Host": "llm.aistack.localhost"},
                    extensions={"sni_hostname": "llm.aistack.localhost"},
                )
            return response.status_code == 503

        wait_until(serving, 30, "caddy")
        yield Caddy(port, root, password)
    finally:
        proc.terminate()
        proc.wait(20)


def caddy_settings(tmp_path: Path, caddy: Caddy, password: str) -> Settings:
    return settings_for(
        tmp_path,
        OPS_CADDY_URL=f"https://127.0.0.1:{caddy.port}",
        LITELLM_DOMAIN="llm.aistack.localhost",
        N8N_DOMAIN="n8n.aistack.localhost",
        OPS_N8N_URL="",
        BASIC_AUTH_USER="admin",
        BASIC_AUTH_PASSWORD=password,
    )


def test_caddy_and_n8n_are_asked_by_name_at_caddys_port_with_its_certificate_verified(
    tmp_path: Path, caddy: Caddy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(caddy.root))  # trust Caddy's internal CA, as the VM trusts Let's Encrypt

    report = run_health(caddy_settings(tmp_path, caddy, caddy.password), only=("caddy", "n8n"), timeout=SLACK)
    seen = lines(report)
    at = f"https://llm.aistack.localhost at 127.0.0.1:{caddy.port}/health/liveliness"
    assert seen["caddy"] == (True, f"answered HTTP 503 at {at} (the upstream behind it does not answer)")
    # through basic auth to n8n, which does not run here: 502, not Caddy's 401
    assert seen["n8n"][0] is False
    assert seen["n8n"][1].startswith(f"HTTP 502 from https://n8n.aistack.localhost at 127.0.0.1:{caddy.port}/healthz/readiness")

    wrong = run_health(caddy_settings(tmp_path, caddy, "wrong-password"), only=("n8n",), timeout=SLACK)
    assert lines(wrong)["n8n"][1].startswith("HTTP 401 ")

    monkeypatch.delenv("SSL_CERT_FILE")
    untrusted = run_health(caddy_settings(tmp_path, caddy, caddy.password), only=("caddy",), timeout=SLACK)
    assert untrusted.down == ["caddy"]
    assert "CERTIFICATE_VERIFY_FAILED" in lines(untrusted)["caddy"][1]
