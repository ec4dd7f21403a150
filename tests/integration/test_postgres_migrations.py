"""LiteLLM's database migrations on the stack's Postgres major (the harness runs the same one).

Prisma's engine cannot be fetched here, so `prisma migrate deploy` cannot run; its migrations are
plain SQL files shipped in litellm-proxy-extras, applied here in order with psql as Prisma applies
them (one script each, outside a transaction: one has CREATE INDEX CONCURRENTLY). Prisma's own
bookkeeping table is left out. Langfuse's migrations (packages/shared/prisma/migrations of the
pinned release) were applied the same way by hand: see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import importlib.util
import subprocess
import uuid
from pathlib import Path

import pytest

from ops import tools
from ops.local.processes import PostgresServer
from tests.conftest import require

pytestmark = pytest.mark.integration


def test_litellms_migrations_apply_in_order_on_the_stacks_postgres(postgres: PostgresServer) -> None:
    spec = importlib.util.find_spec("litellm_proxy_extras")
    require(spec and spec.origin, "litellm-proxy-extras (a dependency of litellm[proxy])")
    assert spec is not None and spec.origin is not None
    migrations = sorted((Path(spec.origin).parent / "migrations").glob("*/migration.sql"))
    assert len(migrations) > 100  # the package layout moved: this test would pass on nothing
    psql = [tools.postgres_bin("psql") or "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    env = postgres.client_env()
    database = f"litellm_{uuid.uuid4().hex[:8]}"
    subprocess.run([*psql, "-c", f'CREATE DATABASE "{database}"'], env=env, check=True, capture_output=True)
    try:
        for migration in migrations:
            proc = subprocess.run([*psql, "-d", database, "-f", str(migration)], env=env, capture_output=True, text=True)
            assert proc.returncode == 0, f"{migration.parent.name}: {proc.stderr[-600:]}"
        tables = subprocess.run(
            [*psql, "-d", database, "-At", "-c", "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'LiteLLM_%'"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        assert int(tables.stdout) > 20
    finally:
        subprocess.run([*psql, "-c", f'DROP DATABASE "{database}" WITH (FORCE)'], env=env, capture_output=True)
