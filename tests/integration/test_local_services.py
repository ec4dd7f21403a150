"""The harness's real PostgreSQL 18, Redis 7 on the compose file's own command line, and the database init script."""

from __future__ import annotations

import secrets
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ops import tools
from ops.errors import ServiceError
from ops.local.demo import APP_DATABASES, create_app_databases
from ops.local.processes import LOOPBACK, PostgresServer, RedisServer, free_port, wait_until
from ops.stack import load_stack
from tests.conftest import REPO, require

pytestmark = pytest.mark.integration


def test_postgres_is_the_stacks_supported_major_and_requires_the_password(postgres: PostgresServer) -> None:
    with psycopg.connect(postgres.dsn()) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    # n8n 2.40.7 supports 17 and newer; the compose file's image has the same major (tests/unit/test_postgres_version.py)
    assert int(row[0]) >= 170000
    assert int(row[0]) // 10000 == tools.POSTGRES_MAJOR
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres.dsn(password="wrong"))


def test_init_script_creates_isolated_databases_and_is_idempotent(postgres: PostgresServer) -> None:
    passwords = create_app_databases(REPO, postgres)
    for db in APP_DATABASES:
        with psycopg.connect(postgres.dsn(db, user=db, password=passwords[db])) as conn:
            owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()").fetchone()
            assert owner == (db,)
    # a role cannot reach another app's database
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(postgres.dsn("n8n", user="litellm", password=passwords["litellm"]))
    # a second run changes the passwords and nothing else
    again = create_app_databases(REPO, postgres)
    with psycopg.connect(postgres.dsn("litellm", user="litellm", password=again["litellm"])) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_init_script_without_a_password_fails_and_names_it(postgres: PostgresServer) -> None:
    env = {**postgres.client_env(), "LITELLM_DB_PASSWORD": "x" * 20}
    env.pop("N8N_DB_PASSWORD", None)
    proc = subprocess.run(["bash", str(REPO / "postgres/init/create-databases.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "N8N_DB_PASSWORD is not set" in proc.stderr


class ComposeRedis:
    """redis-server started with docker-compose.vps.yml's own command line, on a free loopback port.

    The compose file's ``sh -c`` script runs as written (``$$`` is compose's
    escape for ``$``), so these tests check the stack's settings, not the
    harness's. Only the image's docker-entrypoint.sh is stood in for: it runs
    this machine's redis-server with the port, address and directory the
    container gives it (6379 on every address, /data).
    """

    def __init__(self, directory: Path, server: str) -> None:
        command = load_stack(REPO / "docker-compose.vps.yml").service("redis").spec["command"]
        assert command[:2] == ["sh", "-c"] and "docker-entrypoint.sh redis-server" in command[2], command
        self.script = command[2].replace("$$", "$")
        self.port, self.password = free_port(), secrets.token_hex(16)
        self.dir, self.log = directory, directory / "redis.log"
        (directory / "data").mkdir(parents=True)
        entrypoint = directory / "bin" / "docker-entrypoint.sh"
        entrypoint.parent.mkdir()
        entrypoint.write_text(
            '#!/bin/sh\n[ "$1" = redis-server ] || exit 64\nshift\n'
            f'exec {server} "$@" --port {self.port} --bind 127.0.0.1 --dir {directory / "data"}\n'
        )
        entrypoint.chmod(0o755)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {"PATH": f"{self.dir / 'bin'}:/usr/bin:/bin", "REDIS_PASSWORD": self.password}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(["sh", "-c", self.script], env=env, stdout=log, stderr=subprocess.STDOUT)
        client = self.client()
        wait_until(lambda: self.proc is not None and self.proc.poll() is None and bool(client.ping()), 30, "redis", self.log)
        client.close()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def client(self, password: str | None = None) -> redis.Redis:
        """A client that tries once: redis-py retries an AuthenticationError (a ConnectionError) with backoff,
        4 s per refused password, and nothing here needs a retry."""
        password = self.password if password is None else password
        return redis.Redis(port=self.port, password=password, socket_timeout=5, retry=Retry(NoBackoff(), 0))


@pytest.fixture
def compose_redis(tmp_path: Path) -> Iterator[ComposeRedis]:
    server = tools.redis_server()
    require(server, "redis-server (apt-get install redis-server)")
    assert server is not None
    service = ComposeRedis(tmp_path / "redis", server)
    service.start()
    try:
        yield service
    finally:
        service.stop()


def test_the_stacks_redis_requires_the_password_and_fits_its_container(compose_redis: ComposeRedis) -> None:
    with pytest.raises(redis.AuthenticationError):
        compose_redis.client(password="").ping()
    with pytest.raises(redis.AuthenticationError):
        compose_redis.client(password="wrong-password").ping()
    # Redis refuses writes at its maxmemory; above the container's limit the kernel would kill it first
    maxmemory = int(str(compose_redis.client().config_get("maxmemory")["maxmemory"]))
    limit_mb = load_stack(REPO / "docker-compose.vps.yml").service("redis").memory_mb
    assert limit_mb is not None and 0 < maxmemory < limit_mb * 2**20


def test_the_stacks_redis_keeps_stream_entries_across_a_crash(compose_redis: ComposeRedis) -> None:
    client = compose_redis.client()
    ids = [client.xadd("events", {"n": str(i)}) for i in range(50)]
    client.close()
    compose_redis.stop(signal.SIGKILL)  # no shutdown save: only the append-only file can bring them back
    compose_redis.start()
    entries = compose_redis.client().xrange("events") or []
    assert [entry_id for entry_id, _ in entries] == ids


def test_the_stacks_redis_refuses_writes_when_full_and_evicts_nothing(compose_redis: ComposeRedis) -> None:
    client = compose_redis.client()
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", str(used + 2 * 2**20))  # full after about 2 MiB more, under the stack's policy
    written: list[str] = []
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for i in range(10_000):
            client.set(f"job:{i}", "x" * 4096, ex=3600)  # with an expiry, so a volatile-* policy could evict them too
            written.append(f"job:{i}")
    assert len(written) > 100
    assert client.exists(*written) == len(written)  # every acknowledged write is still there


def test_a_service_that_dies_while_starting_fails_its_wait_naming_the_exit_not_a_timeout() -> None:
    """A crashed service is reported as crashed, with its log, instead of waiting out the whole timeout."""
    require(tools.redis_server(), "redis-server (apt-get install redis-server)")
    server = RedisServer()
    with socket.socket() as taken:
        taken.bind((LOOPBACK, server.port))  # bound, not listening: redis cannot bind, clients are refused
        with pytest.raises(ServiceError) as caught:
            server.start()
    server.stop()
    message = str(caught.value)
    assert "redis exited with code" in message, message
    assert "did not become ready" not in message
    assert "Address already in use" in message  # the log's tail says why
