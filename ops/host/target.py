"""Which host ops host check/prepare works on: this machine (@local) or USER@HOST over ssh."""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.errors import OpsError


class HostError(OpsError):
    """The host cannot be reached, logged in to, or brought to the spec; the message names why."""


_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:.]+\]?$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]*$")


@dataclass(frozen=True)
class HostTarget:
    """@local, or ssh to user@hostname:port with a key file (the agent's keys when None)."""

    hostname: str = "@local"
    user: str = ""
    port: int = 22
    key: Path | None = None
    known_hosts: Path | None = None

    @property
    def local(self) -> bool:
        return self.hostname == "@local"

    @property
    def root(self) -> bool:
        """Whether commands run as root without sudo."""
        return os.geteuid() == 0 if self.local else self.user == "root"

    @property
    def label(self) -> str:
        return "@local" if self.local else f"{self.user}@{self.hostname}:{self.port}"

    def inventory_data(self) -> dict[str, Any]:
        """Return pyinfra's host data for this target (the ssh connector's options)."""
        if self.local:
            return {}
        data: dict[str, Any] = {
            "ssh_user": self.user,
            "ssh_port": self.port,
            "ssh_strict_host_key_checking": "accept-new",
            "ssh_connect_retries": 0,
        }
        if self.key is not None:
            data["ssh_key"] = str(self.key)
            data["ssh_look_for_keys"] = False
            data["ssh_allow_agent"] = False
        if self.known_hosts is not None:
            data["ssh_known_hosts_file"] = str(self.known_hosts)
        return data


def parse_target(ssh: str | None, port: int = 22, key: Path | None = None, known_hosts: Path | None = None) -> HostTarget:
    """Given --ssh USER@HOST (None: this machine), --port, --key and --known-hosts, return the HostTarget.

    Raise HostError if the address is malformed, the port is out of range or the key file is unreadable.
    """
    if ssh is None or ssh == "@local":
        if key is not None:
            raise HostError("--key goes with --ssh USER@HOST; without --ssh ops works on this machine")
        return HostTarget()
    user, at, hostname = ssh.rpartition("@")
    if not at:
        user = getpass.getuser()
    if not _USER.match(user) or not hostname or not _HOSTNAME.match(hostname):
        raise HostError(f"--ssh must be USER@HOST (a user name and a host name or address), got {ssh!r}")
    if not 0 < port < 65536:
        raise HostError(f"--port must be between 1 and 65535, got {port}")
    if key is not None:
        try:
            head = key.read_text(encoding="utf-8", errors="replace")[:100]
        except OSError as exc:
            raise HostError(f"cannot read the ssh key {key}: {exc.strerror or exc}") from exc
        if "PRIVATE KEY" not in head:
            raise HostError(f"the ssh key {key} is not a private key file (ssh-keygen writes one)")
    return HostTarget(hostname.strip("[]"), user, port, key, known_hosts)
