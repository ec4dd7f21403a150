"""ops host prepare over ssh against a real sshd: a Debian 12 container (the "sshd" stand-in image).

One container for the module, logged in to as a passwordless sudoer with a key the test makes. prepare
runs twice (the second changes nothing and says so), check exits 0 after; the container's files are
read back; the test machine's own kernel settings are compared before and after. Docker's packages are
stand-ins at the pinned versions and the Ops Agent cannot be installed here (no route to Google): prepare
runs with --no-ops-agent, and check without it plans the agent's install (planned, not executed).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops.config import load_settings
from ops.host import HostError, run_host_check, run_host_prepare
from ops.host import spec as s
from ops.local.processes import free_port
from tests.conftest import REPO, require
from tests.stack.conftest import IMAGE_CACHE
from tests.stack.images import RECIPES, build

pytestmark = pytest.mark.stack
OPS = str(REPO / ".venv" / "bin" / "ops")


@dataclass(frozen=True)
class SshHost:
    container: str
    port: int
    key: Path
    known_hosts: Path

    @property
    def ssh(self) -> str:
        return "admin@127.0.0.1"

    def cat(self, path: str) -> str:
        return subprocess.run(["docker", "exec", self.container, "cat", path], capture_output=True, text=True, check=True).stdout


def _banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            return conn.recv(4).startswith(b"SSH-")
    except OSError:
        return False


@pytest.fixture(scope="module")
def ssh_host(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHost]:
    require(shutil.which("debootstrap"), "debootstrap (apt-get install debootstrap)")
    require(shutil.which("ssh-keygen"), "ssh-keygen (apt-get install openssh-client)")
    tag = build(RECIPES["sshd"], IMAGE_CACHE)
    keys = tmp_path_factory.mktemp("host-keys")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "admin")], check=True)
    port = free_port()
    name = f"aistack-host-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        # NET_ADMIN in the container's own network namespace only: the test's `nft -c` needs netlink there
        ["docker", "run", "-d", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:22", "--cap-add", "NET_ADMIN",
         "-e", f"AUTHORIZED_KEY={(keys / 'admin.pub').read_text().strip()}", tag],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _banner(port):
            if time.monotonic() > deadline:
                logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
                pytest.fail(f"sshd in {name} did not answer: {logs.stdout}{logs.stderr}")
            time.sleep(0.2)
        yield SshHost(name, port, keys / "admin", keys / "known_hosts")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def _kernel() -> tuple[str, str, str]:
    """The test machine's own swappiness, overcommit and swaps: prepare must leave them alone."""
    return tuple(Path(p).read_text() for p in ("/proc/sys/vm/swappiness", "/proc/sys/vm/overcommit_memory", "/proc/swaps"))  # type: ignore[return-value]


def test_prepare_twice_over_ssh_then_check(ssh_host: SshHost) -> None:
    settings = load_settings(REPO)
    where = {"port": ssh_host.port, "key": ssh_host.key, "known_hosts": ssh_host.known_hosts}
    kernel = _kernel()

    dry = run_host_prepare(settings, ssh_host.ssh, ops_agent=False, dry_run=True, **where)  # type: ignore[arg-type]
    assert {"docker", "sysctl", "upgrades", "logs", "firewall"} <= {r.name for r in dry.changes}
    assert dry.lines()[-1].endswith("part(s) would change")
    for path in (s.SYSCTL_PATH, s.DAEMON_JSON_PATH):  # --dry-run wrote nothing
        assert subprocess.run(["docker", "exec", ssh_host.container, "test", "-e", path]).returncode == 1

    first = run_host_prepare(settings, ssh_host.ssh, ops_agent=False, **where)  # type: ignore[arg-type]
    changed = {r.name for r in first.changes}
    assert {"docker", "sysctl", "upgrades", "logs", "firewall"} <= changed, first.lines()
    assert first.in_container
    by_name = {r.name: r for r in first.steps}
    assert by_name["swap"].status == "skipped" and "skipped in a container" in by_name["swap"].detail
    assert by_name["ops-agent"].status == "skipped"
    assert ssh_host.cat(s.SYSCTL_PATH) == s.SYSCTL_CONF
    assert json.loads(ssh_host.cat(s.DAEMON_JSON_PATH))["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert ssh_host.cat(s.NFTABLES_PATH) == s.nftables_conf()
    # nft parses the ruleset (-c: checked, not loaded), in the container's own network namespace, never the host's
    parsed = subprocess.run(
        ["docker", "exec", ssh_host.container, "nft", "-c", "-f", s.NFTABLES_PATH], capture_output=True, text=True
    )
    assert parsed.returncode == 0, parsed.stderr
    assert "Signed-By: /etc/apt/keyrings/docker.asc" in ssh_host.cat(s.DOCKER_SOURCES_PATH)
    holds = subprocess.run(["docker", "exec", ssh_host.container, "apt-mark", "showhold"], capture_output=True, text=True)
    assert set(holds.stdout.split()) == set(s.DOCKER_PINS)
    groups = subprocess.run(["docker", "exec", ssh_host.container, "id", "-nG", "admin"], capture_output=True, text=True)
    assert "docker" in groups.stdout.split()

    second = run_host_prepare(settings, ssh_host.ssh, ops_agent=False, **where)  # type: ignore[arg-type]
    assert second.changes == [], second.lines()
    assert second.lines()[-1] == f"admin@127.0.0.1:{ssh_host.port}: nothing to change, already prepared"
    assert _kernel() == kernel

    argv = [OPS, "host", "check", "--project-dir", str(REPO), "--ssh", ssh_host.ssh, "--port", str(ssh_host.port),
            "--key", str(ssh_host.key), "--known-hosts", str(ssh_host.known_hosts)]  # fmt: skip
    check = subprocess.run([*argv, "--no-ops-agent"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "matches, nothing would change" in check.stdout
    # the Ops Agent is planned, not executed: Google's script cannot be reached from here
    planned = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert planned.returncode == 1, planned.stdout + planned.stderr
    assert [line.split()[:3] for line in planned.stdout.splitlines() if "ops-agent" in line] == [["would", "change", "ops-agent"]]


def test_a_key_the_host_refuses_is_one_line(ssh_host: SshHost, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    with pytest.raises(HostError, match=r"^cannot log in to admin@127.0.0.1:\d+ over ssh: the key was refused"):
        run_host_check(
            load_settings(REPO), ssh_host.ssh, port=ssh_host.port, key=tmp_path / "other", known_hosts=ssh_host.known_hosts
        )


def test_a_user_without_passwordless_sudo_is_one_line(ssh_host: SshHost) -> None:
    script = (
        "id guest >/dev/null 2>&1 || useradd --create-home guest && mkdir -p /home/guest/.ssh"
        " && cp /home/admin/.ssh/authorized_keys /home/guest/.ssh/ && chown -R guest /home/guest/.ssh"
    )
    subprocess.run(["docker", "exec", ssh_host.container, "sh", "-c", script], check=True, capture_output=True)
    refused = r"^sudo on guest@127.0.0.1:\d+ asks for a password \(give the user passwordless sudo, or log in as root\)$"
    with pytest.raises(HostError, match=refused):
        run_host_check(
            load_settings(REPO), "guest@127.0.0.1", port=ssh_host.port, key=ssh_host.key, known_hosts=ssh_host.known_hosts
        )


def test_a_host_other_than_debian_12_is_refused_in_one_line(ssh_host: SshHost) -> None:
    def sh(script: str) -> None:
        subprocess.run(["docker", "exec", ssh_host.container, "sh", "-c", script], check=True, capture_output=True)

    sh("sed 's/^VERSION_CODENAME=.*/VERSION_CODENAME=trixie/' /usr/lib/os-release > /tmp/os && mv /tmp/os /etc/os-release")
    try:
        with pytest.raises(HostError, match=r"^admin@127.0.0.1:\d+ runs debian trixie; ops host wants Debian 12 \(bookworm\)$"):
            run_host_check(
                load_settings(REPO), ssh_host.ssh, port=ssh_host.port, key=ssh_host.key, known_hosts=ssh_host.known_hosts
            )
    finally:
        sh("ln -sf ../usr/lib/os-release /etc/os-release")
