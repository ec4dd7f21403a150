"""Postgres: SELECT 1 as the superuser, through `docker compose exec -T postgres psql` or at OPS_POSTGRES_URL.

Postgres publishes no port and sits on the internal `data` network, so on the VM ops reaches it the way
the journal and the backups do: psql inside its container (docker-compose.vps.yml; ops/journal.py). The
latency then includes starting `docker compose exec`. OPS_POSTGRES_URL (local mode, tests) runs psql here.
"""

from __future__ import annotations

import dataclasses
import subprocess

from ops.backup.context import PostgresAccess
from ops.config import Settings
from ops.errors import ServiceError
from ops.health.base import Down, ProbeResult, measure
from ops.runtime.compose import Compose

NAME = "postgres"


def access(settings: Settings) -> tuple[PostgresAccess, str]:
    """Given Settings, return how psql reaches Postgres and how to say it. Raise ConfigError on a bad OPS_POSTGRES_URL."""
    env = settings.effective_env
    if env.get("OPS_POSTGRES_URL"):
        local = PostgresAccess.from_url(env["OPS_POSTGRES_URL"], env.get("OPS_POSTGRES_BIN_DIR", ""))
        host, port = local.conn[1], local.conn[3]
        return local, f"{host}:{port}"
    return PostgresAccess(tuple(Compose.for_settings(settings).argv("exec", "-T", "postgres"))), "docker compose exec"


def probe(settings: Settings, timeout: float) -> ProbeResult:
    postgres, how = access(settings)
    psql = dataclasses.replace(postgres.psql(), timeout=timeout)

    def exchange() -> str:
        try:
            rows = psql.query("SELECT 1;")
        except ServiceError as exc:
            if isinstance(exc.__cause__, subprocess.TimeoutExpired):
                raise Down(f"no answer within {timeout:g} s ({how})") from None
            raise Down(f"{how}: {exc}") from None
        if rows != [["1"]]:
            raise Down(f"SELECT 1 answered {rows!r} ({how})")
        return f"SELECT 1 answered ({how})"

    return measure(NAME, exchange)
