"""Image references as Docker reads them, and `ops images` when no registry answers.

The registry conversation itself is tested against a real registry in
tests/stack/test_images_registry.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.errors import ConfigError
from ops.images.reference import DOCKER_HUB_API, parse_reference
from ops.images.registry import parse_registry_map, registry_base
from ops.local.processes import free_port
from tests.unit.cli import Ran, run_ops

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("postgres:18.6-trixie", "docker.io", "library/postgres", "18.6-trixie", None),  # official: library/
        ("n8nio/n8n:2.40.7", "docker.io", "n8nio/n8n", "2.40.7", None),
        ("docker.io/redis:7.4.5", "docker.io", "library/redis", "7.4.5", None),
        ("index.docker.io/library/redis:7.4.5", "docker.io", "library/redis", "7.4.5", None),
        ("ghcr.io/berriai/litellm:v1.100.5", "ghcr.io", "berriai/litellm", "v1.100.5", None),
        ("localhost:5000/team/app:1.0", "localhost:5000", "team/app", "1.0", None),
        (f"caddy:2.10.2@{DIGEST}", "docker.io", "library/caddy", "2.10.2", DIGEST),
        (f"127.0.0.1:5000/app@{DIGEST}", "127.0.0.1:5000", "app", None, DIGEST),
    ],
)
def test_references_resolve_to_registry_repository_tag_and_digest(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


def test_pinning_keeps_the_name_as_written_and_the_tag() -> None:
    assert parse_reference("postgres:18.6-trixie").pinned(DIGEST) == f"postgres:18.6-trixie@{DIGEST}"
    assert parse_reference(f"localhost:5000/app:1@{'sha256:' + '0' * 64}").pinned(DIGEST) == f"localhost:5000/app:1@{DIGEST}"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("postgres", "neither tag nor digest"),
        ("Postgres:18", "lowercase"),
        ("postgres:18@sha256:abc", "malformed digest"),
        ("postgres:-18", "malformed tag"),
        ("${POSTGRES_IMAGE}", "variable"),
    ],
)
def test_malformed_references_are_named(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_reference(text)


def test_registries_default_to_https_and_the_map_overrides_them() -> None:
    assert registry_base("docker.io", {}) == DOCKER_HUB_API and DOCKER_HUB_API.startswith("https://")
    assert registry_base("ghcr.io", {}) == "https://ghcr.io"
    mapping = parse_registry_map(["ghcr.io=http://127.0.0.1:5000/"])
    assert registry_base("ghcr.io", mapping) == "http://127.0.0.1:5000"
    for bad in ("ghcr.io", "ghcr.io=127.0.0.1:5000", "=http://127.0.0.1:5000"):
        with pytest.raises(ConfigError, match="NAME=URL"):
            parse_registry_map([bad])


def _ops(project: Path, *args: str) -> Ran:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    maps = [a for name in ("docker.io", "ghcr.io") for a in ("--registry-map", f"{name}={closed}")]
    return run_ops("images", *args, "--project-dir", str(project), *maps)


def test_check_without_a_reachable_registry_names_each_image_and_says_why(project: Path) -> None:
    result = _ops(project, "check")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows and all(row[0] in ("unreachable", "built") for row in rows)
    assert {row[1] for row in rows if row[0] == "unreachable"} >= {"postgres", "redis", "litellm", "caddy"}
    assert result.stderr.startswith("no container registry reachable: cannot reach http://127.0.0.1:")


def test_pin_without_a_reachable_registry_writes_nothing(project: Path) -> None:
    before = (project / "docker-compose.vps.yml").read_text()

    result = _ops(project, "pin")

    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot pin, nothing written: ") and "unreachable" in result.stderr
    assert "Traceback" not in result.stderr
    assert (project / "docker-compose.vps.yml").read_text() == before
