"""Postgres: SELECT 1 as the superuser, through `docker compose exec -T postgres psql` or at OPS_POSTGRES_URL.

Postgres publishes no port and sits on the internal `data` network, so on the VM ops reaches it the way
the journal and the backups do: psql inside its container (docker-compose.vps.yml; ops/journal.py). The
latency then includes starting `docker compose exec`. OPS_POSTGRES_URL (local mode, tests) runs psql here.

The timeout is kept inside the container too: killing `docker compose exec` at the timeout ends the docker
client only, and the psql it started keeps running in the container (moby/moby#9098). Against a hung Postgres
the every-minute alert check would leave one psql a minute there, each holding a connection slot once the
server answers again. So psql gets PGCONNECT_TIMEOUT and runs under `timeout -s KILL`.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess

from ops.backup.context import PostgresAccess, postgres_access
from ops.config import Settings
from ops.errors import ServiceError
from ops.health.base import Down, ProbeResult, measure
from ops.journal import Psql
from ops.runtime.compose import Compose

NAME = "postgres"


def connect_timeout(timeout: float) -> str:
    """Given the probe's seconds, return PGCONNECT_TIMEOUT's value: whole seconds, rounded up (libpq reads an integer
    and waits at least 2 s; source: PostgreSQL docs, libpq-connect.html, connect_timeout)."""
    return str(max(1, math.ceil(timeout)))


def kill_after(timeout: float) -> str:
    """Given the probe's seconds, return coreutils `timeout`'s duration: never 0, which would mean no limit."""
    return f"{max(math.ceil(timeout * 1000), 1) / 1000:g}"


def access(settings: Settings, timeout: float, database: str = "postgres") -> tuple[Psql, str]:
    """Given Settings and the probe's seconds, return the psql that asks Postgres (database) within them, and how
    to say it. ops.cost reads LiteLLM's spend with it (the alert check's every minute).

    Raise ConfigError on a bad OPS_POSTGRES_URL, ServiceError if docker compose (v2) is missing.
    """
    env = settings.effective_env
    wait = ("PGCONNECT_TIMEOUT", connect_timeout(timeout))
    if env.get("OPS_POSTGRES_URL"):
        postgres = postgres_access(settings)
        how = f"{postgres.conn[1]}:{postgres.conn[3]}"
    else:
        # `exec -e` sets the variable for the command in the container; `timeout` is coreutils', in the image:
        # source: docker-library/postgres 18/trixie/Dockerfile, FROM debian:trixie-slim (coreutils is Essential:
        # the same Dockerfile runs coreutils' `install` in it); psql is on its PATH (ENV PATH .../$PG_MAJOR/bin).
        inside = ("-e", "=".join(wait), "postgres", "timeout", "-s", "KILL", kill_after(timeout))
        postgres = PostgresAccess(tuple(Compose.for_settings(settings).argv("exec", "-T", *inside)))
        how = "docker compose exec"
    psql = postgres.psql(database)
    return dataclasses.replace(psql, env=(*psql.env, wait), timeout=timeout), how


def probe(settings: Settings, timeout: float) -> ProbeResult:
    """Given Settings and seconds, return Postgres's result: ok when psql's SELECT 1 answers 1 within them.

    Raise ConfigError on a bad OPS_POSTGRES_URL, ServiceError if docker compose (v2) is missing.
    """
    psql, how = access(settings, timeout)

    def exchange() -> str:
        try:
            rows = psql.query("SELECT 1;")
        except ServiceError as exc:
            # PGCONNECT_TIMEOUT and our timeout end at the same second: on a loaded host psql's own
            # "timeout expired" may come first; both say the server did not answer in time
            if isinstance(exc.__cause__, subprocess.TimeoutExpired) or "timeout expired" in str(exc):
                raise Down(f"no answer within {timeout:g} s ({how})") from None
            raise Down(f"{how}: {exc}") from None
        if rows != [["1"]]:
            raise Down(f"SELECT 1 answered {rows!r} ({how})")
        return f"SELECT 1 answered ({how})"

    return measure(NAME, exchange)
