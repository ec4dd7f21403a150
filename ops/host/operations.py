"""pyinfra operations of ops host prepare: each reads the host's facts and yields commands only when it differs.

The generic ones come from pyinfra (files.put, files.line, server.sysctl, server.shell); the ones here
read a fact of their own through pyinfra's Command fact: packages at a pinned version, holds, the swap
file, systemd units, the firewall's table, the Ops Agent. Every command is idempotent in itself too.
"""

from __future__ import annotations

import shlex
from collections.abc import Generator, Mapping

from pyinfra.api.operation import operation
from pyinfra.context import host
from pyinfra.facts.files import File
from pyinfra.facts.server import Command

_DPKG_QUERY = "dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\\n'"
APT_ENV = "DEBIAN_FRONTEND=noninteractive"


def probe(command: str) -> str:
    """Given a shell command, return its output on the current host ('' when it fails or prints nothing)."""
    return str(host.get_fact(Command, command=f"({command}) 2>/dev/null || true") or "").strip()


def installed_packages(dpkg_output: str) -> dict[str, str]:
    """Given dpkg-query's `Package Version Status-Abbrev` lines, return name -> version of the installed ones.

    The status's second letter is the package's state: 'i' installed ('ii', or 'hi' when held).
    """
    installed: dict[str, str] = {}
    for line in dpkg_output.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2][1:2] == "i":
            installed[parts[0]] = parts[1]
    return installed


def missing_packages(installed: Mapping[str, str], wanted: Mapping[str, str | None]) -> list[str]:
    """Given what is installed and name -> pinned version (None: any), return apt's arguments for what differs."""
    return [
        f"{name}={version}" if version else name
        for name, version in wanted.items()
        if name not in installed or (version is not None and installed[name] != version)
    ]


def install_commands(missing: list[str]) -> list[str]:
    """Given apt's arguments for what differs, return the commands installing them (none when nothing differs)."""
    if not missing:
        return []
    return [
        f"{APT_ENV} apt-get update -qq",
        f"{APT_ENV} apt-get install -y -qq --no-install-recommends --allow-downgrades --allow-change-held-packages "
        "-o Dpkg::Options::=--force-confold " + " ".join(shlex.quote(m) for m in missing),
    ]


@operation()
def packages(wanted: dict[str, str | None]) -> Generator[str, None, None]:
    """Install each package, at its pinned version when one is given, in one apt-get run."""
    yield from install_commands(missing_packages(installed_packages(probe(_DPKG_QUERY)), wanted))


@operation()
def held(names: list[str]) -> Generator[str, None, None]:
    """Hold the packages at their version (apt upgrade leaves them; prepare moves them to the pins)."""
    holds = set(probe("apt-mark showhold").split())
    todo = [n for n in names if n not in holds]
    if todo:
        yield "apt-mark hold " + " ".join(shlex.quote(n) for n in todo)


def swap_commands(path: str, size_mb: int, current_bytes: int | None, active: bool) -> list[str]:
    """Given the swap file's wanted size, its size now (None: absent) and whether it is on, return the commands."""
    if current_bytes == size_mb * 1024 * 1024:
        return [] if active else [f"swapon {path}"]
    return [
        *([f"swapoff {path}"] if active else []),
        f"rm -f {path}",
        f"fallocate -l {size_mb}M {path} || dd if=/dev/zero of={path} bs=1M count={size_mb} status=none",
        f"chmod 600 {path}",
        f"mkswap {path} >/dev/null",
        f"swapon {path}",
    ]


@operation()
def swap_file(path: str, size_mb: int) -> Generator[str, None, None]:
    """A swap file of size_mb at path, on."""
    info = host.get_fact(File, path=path)
    size = int(info["size"]) if isinstance(info, dict) and info.get("size") is not None else None
    yield from swap_commands(path, size_mb, size, path in probe("swapon --show=NAME --noheadings").split())


@operation()
def unit_running(unit: str) -> Generator[str, None, None]:
    """The systemd unit enabled at boot and active now."""
    if probe(f"systemctl is-enabled {unit}") != "enabled":
        yield f"systemctl enable {unit}"
    if probe(f"systemctl is-active {unit}") != "active":
        yield f"systemctl start {unit}"


@operation()
def nft_table_loaded(path: str, table: str) -> Generator[str, None, None]:
    """The ruleset file loaded when its table is not in the kernel's ruleset."""
    if not probe(f"nft list table {table} >/dev/null && echo loaded"):
        yield f"nft -f {path}"


@operation()
def in_group(user: str, group: str) -> Generator[str, None, None]:
    """The user a member of the group (the docker group: docker without sudo)."""
    if group not in probe(f"id -nG {shlex.quote(user)}").split():
        yield f"usermod -aG {group} {shlex.quote(user)}"


@operation()
def ops_agent(package: str, script_url: str, version: str) -> Generator[str, None, None]:
    """Google's Ops Agent installed by Google's script (it adds Google's apt repository), when it is not."""
    if package in installed_packages(probe(_DPKG_QUERY)):
        return
    script = "/tmp/add-google-cloud-ops-agent-repo.sh"
    yield f"curl -fsSL --retry 3 -o {script} {shlex.quote(script_url)}"
    yield f"bash {script} --also-install --version={shlex.quote(version)}"
    yield f"rm -f {script}"
