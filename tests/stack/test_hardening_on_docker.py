"""The compose file's services on Docker as a first `up` runs them (issue #10, item 6)."""

from __future__ import annotations

import pytest

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
