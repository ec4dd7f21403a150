"""The compose file's services on Docker as a first `up` runs them (issue #10, item 6), and what a `git pull` brings
onto an existing volume (review of issue #10, item 3)."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest

from ops.envfile import read_env_file
from ops.errors import ConfigError
from ops.runtime.compose import Compose
from ops.runtime.postgres_volume import old_clusters, require_startable_volume
from tests.stack.conftest import StackProject

pytestmark = pytest.mark.stack


def test_redis_server_runs_as_the_redis_user_not_root(stack_project: StackProject) -> None:
    """The command hands redis-server to the image's entrypoint, which drops from root to redis."""
    stack_project.compose("up", "--detach", "--wait", "--wait-timeout", "120", "redis")
    status = stack_project.compose("exec", "-T", "redis", "cat", "/proc/1/status").stdout
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    name = next(line.split()[1] for line in status.splitlines() if line.startswith("Name:"))
    assert name == "redis-server" and uid != "0", status
    # it still writes its append-only file: /data was handed over to the redis user
    owner = stack_project.compose("exec", "-T", "redis", "stat", "-c", "%u", "/data/appendonlydir").stdout.strip()
    assert owner == uid
    # and the password is not on its command line
    cmdline = stack_project.compose("exec", "-T", "redis", "cat", "/proc/1/cmdline").stdout
    env = (stack_project.dir / "vps.env").read_text()
    password = next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith("REDIS_PASSWORD="))
    assert password not in cmdline


def test_the_redis_password_is_in_the_env_not_the_command(stack_project: StackProject) -> None:
    """What the compose file's redis comment says (review of issue #10, item 12): the shell expands the password
    inside the container, so `docker inspect` shows it in Config.Env (as every environment entry), not Config.Cmd."""
    stack_project.compose("up", "--detach", "--wait", "--wait-timeout", "120", "redis")
    container = stack_project.compose("ps", "--quiet", "redis").stdout.strip()
    config = json.loads(subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True).stdout)
    config = config[0]["Config"]
    password = read_env_file(stack_project.dir / "vps.env")["REDIS_PASSWORD"]
    assert password not in json.dumps(config["Cmd"]) and "$REDIS_PASSWORD" in " ".join(config["Cmd"])
    assert f"REDIS_PASSWORD={password}" in config["Env"]


# --- review of issue #10, item 3: a volume the compose file's Postgres image would refuse ---


def other_project(stack_project: StackProject, suffix: str) -> Compose:
    """The stack's compose under another project name: its postgres-data volume is <name>-<suffix>_postgres-data."""
    return dataclasses.replace(Compose.for_settings(stack_project.settings), project_name=f"{stack_project.name}-{suffix}")


def test_the_stacks_own_cluster_passes(stack_project: StackProject) -> None:
    """The fixture's postgres runs on its volume: the image's own 18 cluster is no old one."""
    volume, clusters = old_clusters(Compose.for_settings(stack_project.settings))
    assert volume.name == f"{stack_project.name}_postgres-data" and clusters == []
    require_startable_volume(Compose.for_settings(stack_project.settings))


def test_no_volume_yet_passes_and_creates_none(stack_project: StackProject) -> None:
    compose = other_project(stack_project, "fresh")
    volume, clusters = old_clusters(compose)
    assert clusters == []
    assert subprocess.run(["docker", "volume", "inspect", volume.name], capture_output=True).returncode != 0


def test_a_postgres_15_volume_is_refused_naming_the_runbook(stack_project: StackProject, images: dict[str, str]) -> None:
    """The 15 image kept its cluster at the volume's root (its PGDATA was the mount point): the 18 image refuses it."""
    compose = other_project(stack_project, "pg15")
    name = f"{compose.project_name}_postgres-data"
    subprocess.run(["docker", "volume", "create", name], capture_output=True, check=True)
    try:
        subprocess.run(
            ["docker", "run", "--rm", "--user", "0", "--entrypoint", "sh", "-v", f"{name}:/v", images["postgres"], "-c",
             "echo 15 > /v/PG_VERSION && mkdir /v/base"],
            capture_output=True, check=True,
        )  # fmt: skip
        with pytest.raises(ConfigError) as refused:
            require_startable_volume(compose)
        message = str(refused.value)
        assert f"the volume {name} holds PostgreSQL 15 in /var/lib/postgresql," in message
        assert 'move the data first (docs/RUNBOOK.md, "Postgres 15 -> 18")' in message
        # read-only: the volume is as it was
        listing = subprocess.run(
            ["docker", "run", "--rm", "--user", "0", "--entrypoint", "ls", "-v", f"{name}:/v", images["postgres"], "/v"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        assert sorted(listing) == ["PG_VERSION", "base"]
    finally:
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True)
