"""ops host: the spec (swap size, files, pins), the operations' plans, the report, and bad input as one line.

The operations against a real host over ssh: tests/stack/test_host_on_docker.py.
"""

from __future__ import annotations

import base64
import hashlib
import socket
from pathlib import Path

import pytest
from pyinfra.api.operation import OperationMeta
from pyinfra.connectors.util import CommandOutput

from ops.config import load_settings
from ops.host import HostError, HostReport, StepResult, parse_target, run_host_check
from ops.host import spec as s
from ops.host.operations import install_commands, installed_packages, missing_packages, swap_commands
from ops.host.run import _results, _Step
from tests.unit.cli import run_ops


@pytest.mark.parametrize(
    ("total", "vm", "reserved", "allowance", "swap"),
    [
        (2272, 4096, 672, 0, 1024),  # the shipped core on an e2-medium: the limits fit, the 1 GB floor
        (3424, 4096, 672, 0, 1024),  # the budget exactly full: still the floor
        (4000, 4096, 672, 0, 1024),  # 576 MB past the memory: the 1 GB floor still covers it
        (5000, 4096, 672, 0, 1792),  # 1576 MB past the memory, rounded up to 256 MB steps
        (2272, 4096, 672, 2000, 2048),  # SWAP_ALLOWANCE_MB counted into the budget: at least that much swap
    ],
)
def test_swap_size_from_the_memory_budget(total: int, vm: int, reserved: int, allowance: int, swap: int) -> None:
    assert s.swap_size_mb(total, vm, reserved, allowance) == swap


def test_host_spec_sizes_swap_from_the_projects_limits(project: Path) -> None:
    assert s.host_spec(load_settings(project)).swap_mb == 1024
    env = (project / "vps.env.example").read_text().replace("SWAP_ALLOWANCE_MB=0", "SWAP_ALLOWANCE_MB=1500")
    (project / "vps.env").write_text(env)
    assert s.host_spec(load_settings(project), ops_agent=False) == s.HostSpec(1536, ops_agent=False)


def _fingerprint(armored: str) -> str:
    """The OpenPGP v4 fingerprint of an armored key's primary key: SHA-1 over 0x99, length, key packet body (RFC 4880 12.2)."""
    lines = armored.strip().splitlines()
    body = "".join(line for line in lines[lines.index("") + 1 :] if not line.startswith(("=", "-----")))
    data = base64.b64decode(body)
    tag = data[0]
    assert tag & 0x80, "not an OpenPGP packet"
    if tag & 0x40:  # new format header
        length, start = (data[1], 2) if data[1] < 192 else (((data[1] - 192) << 8) + data[2] + 192, 3)
    else:  # old format: length type in the low two bits
        size = {0: 1, 1: 2, 2: 4}[tag & 0x03]
        length, start = int.from_bytes(data[1 : 1 + size], "big"), 1 + size
    packet = data[start : start + length]
    return hashlib.sha1(b"\x99" + len(packet).to_bytes(2, "big") + packet).hexdigest().upper()


def test_docker_key_is_dockers_release_key() -> None:
    # the fingerprint Docker publishes (docs.docker.com engine/install/debian): a changed file fails here
    assert _fingerprint(s.DOCKER_KEY.read_text()) == s.DOCKER_KEY_FINGERPRINT == "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"


def test_pins_are_debian_12_builds_and_files_are_whole() -> None:
    assert all(v.endswith("~debian.12~bookworm") for v in s.DOCKER_PINS.values())
    assert s.DOCKER_PINS["docker-ce"] == s.DOCKER_PINS["docker-ce-cli"]
    spec = s.HostSpec(1024)
    assert set(spec.files) == {
        s.DOCKER_KEY_PATH, s.DOCKER_SOURCES_PATH, s.SYSCTL_PATH, s.AUTO_UPGRADES_PATH, s.JOURNALD_PATH,
        s.DAEMON_JSON_PATH, s.NFTABLES_PATH, s.NFTABLES_DROPIN_PATH,
    }  # fmt: skip
    assert "vm.overcommit_memory = 1" in s.SYSCTL_CONF and "vm.swappiness = 10" in s.SYSCTL_CONF


def test_firewall_opens_22_80_443_and_leaves_dockers_rules() -> None:
    conf = s.nftables_conf()
    assert "tcp dport { 22, 80, 443 } accept\n    udp dport 443 accept\n  }" in conf  # and nothing else opened
    assert "policy drop" in conf
    assert "flush ruleset" not in conf  # would drop Docker's NAT and forward rules with ours
    assert "ExecStop=\nExecStop=/usr/sbin/nft delete table inet aistack\n" in s.NFTABLES_DROPIN  # not Debian's flush
    assert conf.index("table inet aistack\ndelete table inet aistack") < conf.index("table inet aistack {")


def test_packages_plan_installs_only_what_differs() -> None:
    dpkg = "docker-ce 5:28.5.2-1~debian.12~bookworm hi \nchrony 4.3-2 ii \ncurl 7.88 rc \nnano 7.2 un \n"
    installed = installed_packages(dpkg)
    assert installed == {"docker-ce": "5:28.5.2-1~debian.12~bookworm", "chrony": "4.3-2"}  # held counts; removed does not
    wanted = {"docker-ce": "5:28.5.2-1~debian.12~bookworm", "chrony": None, "curl": None, "docker-ce-cli": "5:1"}
    assert missing_packages(installed, wanted) == ["curl", "docker-ce-cli=5:1"]
    assert missing_packages({"docker-ce": "5:27.0.0"}, {"docker-ce": "5:28"}) == ["docker-ce=5:28"]  # moved to the pin
    assert install_commands([]) == []
    update, install = install_commands(["docker-ce=5:28.5.2-1~debian.12~bookworm"])
    assert update.endswith("apt-get update -qq")
    assert install.endswith("--force-confold 'docker-ce=5:28.5.2-1~debian.12~bookworm'")
    assert "--allow-change-held-packages" in install


@pytest.mark.parametrize(
    ("current", "active", "expected"),
    [
        (1024 * 1024 * 1024, True, []),
        (1024 * 1024 * 1024, False, ["swapon /swapfile"]),
        (None, False, ["rm -f", "fallocate", "chmod", "mkswap", "swapon"]),
        (512 * 1024 * 1024, True, ["swapoff", "rm -f", "fallocate", "chmod", "mkswap", "swapon"]),
    ],
)
def test_swap_plan(current: int | None, active: bool, expected: list[str]) -> None:
    commands = swap_commands("/swapfile", 1024, current, active)
    assert [c for c, e in zip(commands, expected, strict=True) if c.startswith(e)] == commands


def _meta(change: bool, ran: bool | None = None) -> OperationMeta:
    meta = OperationMeta("h", change)
    if ran is not None:
        meta.set_complete(True, ["cmd"] if ran else [], CommandOutput([]))
    return meta


def test_results_planned_and_applied() -> None:
    steps = [
        _Step("docker", "d", [_meta(False), _meta(True)]),
        _Step("swap", "w", skipped="skipped in a container"),
        _Step("sysctl", "y", [_meta(False)], skipped="the file only: applying it is skipped in a container"),
    ]
    planned = _results(steps, applied=False)
    assert [r.status for r in planned] == ["would change", "skipped", "ok"]
    assert planned[2].detail.endswith("skipped in a container")
    steps = [_Step("docker", "d", [_meta(True, ran=False), _meta(True, ran=True)]), _Step("logs", "l", [_meta(True, ran=False)])]
    assert [r.status for r in _results(steps, applied=True)] == ["changed", "ok"]


def test_report_says_a_second_prepare_changed_nothing() -> None:
    ok = [StepResult("docker", "d", "ok"), StepResult("swap", "w", "skipped", "skipped in a container")]
    again = HostReport("admin@vm:22", "prepare", False, True, ok)
    assert again.ok and again.changes == []
    assert again.lines()[-1] == "admin@vm:22: nothing to change, already prepared"
    assert again.lines()[1] == "skipped       swap       w (skipped in a container)"
    first = HostReport("admin@vm:22", "prepare", False, True, [StepResult("docker", "d", "changed"), *ok[1:]])
    assert first.lines()[-1] == "admin@vm:22: changed 1 part(s)"
    check = HostReport("@local", "check", True, False, [StepResult("docker", "d", "would change")])
    assert not check.ok and check.to_dict()["changed"] == ["docker"]
    assert check.lines()[-1] == "@local: 1 part(s) would change"
    assert HostReport("@local", "check", True, False, ok).lines()[-1] == "@local: matches, nothing would change"


@pytest.mark.parametrize(
    ("ssh", "port", "key", "message"),
    [
        ("admin@", 22, None, "--ssh must be USER@HOST"),
        ("admin@bad host", 22, None, "--ssh must be USER@HOST"),
        ("Bad User@vm", 22, None, "--ssh must be USER@HOST"),
        ("admin@vm", 0, None, "--port must be between 1 and 65535"),
        ("admin@vm", 22, "missing", "cannot read the ssh key"),
        ("admin@vm", 22, "public", "is not a private key file"),
        (None, 22, "public", "--key goes with --ssh"),
    ],
)
def test_bad_target_is_one_sentence(tmp_path: Path, ssh: str | None, port: int, key: str | None, message: str) -> None:
    (tmp_path / "public").write_text("ssh-ed25519 AAAAC3Nza... admin@laptop\n")
    with pytest.raises(HostError, match=message) as caught:
        parse_target(ssh, port, tmp_path / key if key else None)
    assert "\n" not in str(caught.value)


def test_target_data_for_pyinfras_ssh_connector(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n...\n")
    target = parse_target("admin@10.0.0.2", 2222, key, tmp_path / "known")
    assert (target.label, target.root) == ("admin@10.0.0.2:2222", False)
    data = target.inventory_data()
    assert (data["ssh_user"], data["ssh_port"], data["ssh_key"]) == ("admin", 2222, str(key))
    assert data["ssh_known_hosts_file"] == str(tmp_path / "known")
    assert data["ssh_strict_host_key_checking"] == "accept-new"
    assert parse_target("root@vm").root
    assert parse_target(None).local and parse_target(None).inventory_data() == {}


def test_unreachable_host_is_one_line(project: Path) -> None:
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(HostError, match=rf"^cannot log in to admin@127.0.0.1:{port} over ssh: nothing answers on that port"):
        run_host_check(load_settings(project), "admin@127.0.0.1", port=port, known_hosts=project / "known_hosts")


def test_cli_bad_input_exits_2_with_one_line(project: Path) -> None:
    ran = run_ops("host", "prepare", "--project-dir", str(project), "--ssh", "admin@bad host", "--dry-run")
    assert ran.returncode == 2
    assert ran.stderr == "error: --ssh must be USER@HOST (a user name and a host name or address), got 'admin@bad host'\n"
