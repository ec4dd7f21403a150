"""The runtime on a real engine: memory limits enforced with the compose restart policy, runbook over ssh, errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.errors import ServiceError
from ops.local.processes import free_port, wait_until
from ops.runtime.compose import Compose
from tests.conftest import require
from tests.stack.conftest import StackProject

pytestmark = pytest.mark.stack


def inspect(container: str, template: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "--format", template, container], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_redis_over_its_memory_limit_is_killed_and_restarted(stack_project: StackProject) -> None:
    stack_project.compose("up", "--detach", "--wait", "redis")
    container = stack_project.compose("ps", "-q", "redis").stdout.strip()
    assert int(inspect(container, "{{.HostConfig.Memory}}")) == 160 * 2**20
    # lift Redis's own maxmemory so only the container limit stands in the way, then write past it
    stack_project.compose("exec", "-T", "redis", "sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli CONFIG SET maxmemory 0')
    fill = (
        'for i in 1 2 3 4 5 6; do head -c 40000000 /dev/zero | REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -x SET "k$i" || exit 0; '
        "done"
    )
    stack_project.compose("exec", "-T", "redis", "sh", "-c", fill, check=False)
    wait_until(lambda: int(inspect(container, "{{.RestartCount}}")) >= 1, 60, "redis restart after the OOM kill")
    wait_until(lambda: inspect(container, "{{.State.Health.Status}}") == "healthy", 60, "redis healthy again")
    assert inspect(container, "{{.HostConfig.RestartPolicy.Name}}") == "unless-stopped"


def test_unreachable_engine_is_a_clear_error(stack_project: StackProject) -> None:
    compose = Compose.for_settings(stack_project.settings)
    nowhere = Compose(**{**compose.__dict__, "docker_host": f"tcp://127.0.0.1:{free_port()}"})
    with pytest.raises(ServiceError, match=r"the Docker engine at tcp://127\.0\.0\.1:\d+ is unreachable"):
        nowhere.ps()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real sshd on a loopback port accepting a test key for root; yields (port, HOME with the ssh config)."""
    require(shutil.which("sshd") or Path("/usr/sbin/sshd").exists(), "sshd (apt-get install openssh-server)")
    require(os.geteuid() == 0, "root (sshd logs in as root here)")
    port = free_port()
    keys = tmp_path / "keys"
    keys.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "host")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "user")], check=True)
    (keys / "authorized_keys").write_text((keys / "user.pub").read_text())
    config = keys / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host'}\nAuthorizedKeysFile {keys / 'authorized_keys'}\n"
        f"PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\nStrictModes no\nPidFile {keys / 'pid'}\n"
        "SetEnv PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {keys / 'user'}\n  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
    )
    (home / ".ssh" / "config").chmod(0o600)
    # ssh reads the config of the passwd home, not $HOME: a wrapper first on PATH passes ours
    bindir = home / "bin"
    bindir.mkdir()
    (bindir / "ssh").write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {home / ".ssh" / "config"} "$@"\n')
    (bindir / "ssh").chmod(0o755)
    try:
        wait_until(
            lambda: (
                subprocess.run(["ssh", "-F", str(home / ".ssh" / "config"), "127.0.0.1", "true"], capture_output=True).returncode
                == 0
            ),
            20,
            "sshd",
        )
        yield port, home
    finally:
        proc.terminate()
        proc.wait(10)


def test_runbook_over_docker_host_ssh(stack_project: StackProject, sshd: tuple[int, Path]) -> None:
    stack_project.compose("up", "--detach", "--wait", "redis")
    port, home = sshd
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{home / 'bin'}:{os.environ['PATH']}",
        "DOCKER_HOST": f"ssh://root@127.0.0.1:{port}",
    }
    base = [sys.executable, "-m", "ops.cli", "runbook", "--project-dir", str(stack_project.dir)]
    stats = subprocess.run([*base, "stats", "redis", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert data["service"] == "redis" and data["limit_mb"] == 160 and data["status"] == "running"
    pong = subprocess.run(
        [*base, "exec", "redis", "--", "sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping'],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pong.stdout.strip() == "PONG", pong.stderr
    container = stack_project.compose("ps", "-q", "redis").stdout.strip()
    before = inspect(container, "{{.State.StartedAt}}")
    restart = subprocess.run([*base, "restart", "redis"], env=env, capture_output=True, text=True, timeout=120)
    assert restart.returncode == 0 and "restarted redis" in restart.stdout, restart.stderr
    assert inspect(container, "{{.State.StartedAt}}") != before  # really restarted, not just reported
    wait_until(lambda: inspect(container, "{{.State.Health.Status}}") == "healthy", 60, "redis healthy after the restart")
    unknown = subprocess.run([*base, "logs", "nope"], env=env, capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "unknown service 'nope'" in unknown.stderr
