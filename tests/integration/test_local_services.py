"""The harness's real PostgreSQL 18 and Redis 7, and the stack's database init script on them."""

from __future__ import annotations

import subprocess

import psycopg
import pytest
import redis

from ops import tools
from ops.local.demo import APP_DATABASES, create_app_databases
from ops.local.processes import PostgresServer, RedisServer
from tests.conftest import REPO

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


def test_redis_requires_the_password(redis_server: RedisServer) -> None:
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=redis_server.port).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=redis_server.port, password="wrong-password").ping()


def test_redis_keeps_stream_entries_across_a_restart(redis_server: RedisServer) -> None:
    client = redis.Redis(port=redis_server.port, password=redis_server.password)
    ids = [client.xadd("events", {"n": str(i)}) for i in range(50)]
    client.close()
    redis_server.halt()
    redis_server.start()
    client = redis.Redis(port=redis_server.port, password=redis_server.password)
    entries = client.xrange("events") or []
    assert [entry_id for entry_id, _ in entries] == ids
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
