"""The stack's Postgres major, in the compose file and in the local harness, is one supported major.

A pg_dump refuses a server newer than itself, and n8n 2.40.7 supports 17 and newer: the compose
file's image, the backup helper image and the harness's programs (ops/tools.py) must agree.
tests/integration/test_local_services.py checks that the harness really runs tools.POSTGRES_MAJOR.
"""

from __future__ import annotations

import re

from ops import tools
from ops.envfile import read_env_file
from ops.stack import load_stack
from tests.conftest import REPO

STACK = load_stack(REPO / "docker-compose.vps.yml")
OFFICIAL_TAG = re.compile(r"^postgres:(\d+)\.\d+-(bookworm|trixie)$")


def _major(image: str) -> int:
    match = OFFICIAL_TAG.match(image)
    assert match, f"{image!r} is not an exact official postgres tag such as postgres:18.6-trixie"
    return int(match.group(1))


def test_the_compose_files_postgres_major_is_the_harnesss_and_supported() -> None:
    image = STACK.service("postgres").image or ""
    assert _major(image) == tools.POSTGRES_MAJOR
    assert tools.POSTGRES_MAJOR >= 17  # n8n: "supports Postgres 17 and newer"
    assert STACK.service("postgres-init").image == image  # its psql runs the init script against the server


def test_the_backup_helper_image_is_the_stacks_postgres_image() -> None:
    helper = read_env_file(REPO / "vps.env.example")["OPS_BACKUP_HELPER_IMAGE"]
    assert helper == STACK.service("postgres").image  # one image to pull, and the same major


def test_the_data_volume_is_mounted_where_the_18_image_keeps_its_cluster() -> None:
    # docker-library/postgres 18: PGDATA=/var/lib/postgresql/18/docker, VOLUME /var/lib/postgresql; mounting the
    # volume at .../data (the 15 layout) makes its entrypoint refuse to start
    assert "postgres-data:/var/lib/postgresql" in STACK.service("postgres").spec["volumes"]
