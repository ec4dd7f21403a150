"""The stack definition (docker-compose.vps.yml) as typed data.

Given the compose file's text, return services with their image, memory
limit, profiles, healthcheck and published ports, and the variables it uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.errors import ConfigError
from ops.files import parse_yaml, read_text

_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)i?b?\s*$", re.IGNORECASE)
_UNIT_MB = {"b": 1 / 1024 / 1024, "k": 1 / 1024, "m": 1.0, "g": 1024.0, "": 1 / 1024 / 1024}


def parse_memory_mb(value: object) -> int:
    """Given a compose memory size ("512M", "1g", 268435456), return MiB. Raise ConfigError if malformed."""
    match = _MEMORY.match(str(value))
    if not match:
        raise ConfigError(f"memory size {value!r} is not a size such as 512M or 1G")
    return round(float(match.group(1)) * _UNIT_MB[match.group(2).lower()])


def variables_in(text: str) -> dict[str, bool]:
    """Given text using ${VAR} interpolation, return each variable and whether it has a default."""
    found: dict[str, bool] = {}
    for match in _VAR.finditer(text):
        name = match.group(1) or match.group(4)
        has_default = match.group(2) in (":-", "-")
        found[name] = found.get(name, False) or has_default
    return found


@dataclass(frozen=True)
class Service:
    name: str
    spec: dict[str, Any]

    @property
    def image(self) -> str | None:
        image = self.spec.get("image")
        return str(image) if image is not None else None

    @property
    def profiles(self) -> tuple[str, ...]:
        return tuple(self.spec.get("profiles") or ())

    @property
    def one_shot(self) -> bool:
        """A job that runs to completion (restart "no"), not a long-running service."""
        return str(self.spec.get("restart", "no")) == "no"

    @property
    def memory_mb(self) -> int | None:
        limit = ((self.spec.get("deploy") or {}).get("resources") or {}).get("limits", {}).get("memory")
        limit = limit if limit is not None else self.spec.get("mem_limit")
        return parse_memory_mb(limit) if limit is not None else None

    @property
    def healthcheck(self) -> dict[str, Any] | None:
        check = self.spec.get("healthcheck")
        if not isinstance(check, dict) or check.get("disable"):
            return None
        return check

    @property
    def published_ports(self) -> list[str]:
        """Each published port as text, host side first (an expose-only port is not published)."""
        out = []
        for port in self.spec.get("ports") or []:
            if isinstance(port, dict):
                host_ip = port.get("host_ip", "")
                out.append(f"{host_ip + ':' if host_ip else ''}{port.get('published', '')}:{port.get('target')}")
            else:
                out.append(str(port))
        return out

    def enabled_with(self, profiles: tuple[str, ...]) -> bool:
        return not self.profiles or any(p in profiles for p in self.profiles)


@dataclass(frozen=True)
class Stack:
    path: Path
    text: str
    data: dict[str, Any]

    @property
    def services(self) -> list[Service]:
        return [Service(name, spec or {}) for name, spec in (self.data.get("services") or {}).items()]

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise ConfigError(f"{self.path.name} has no service {name!r}")

    @property
    def all_profiles(self) -> tuple[str, ...]:
        return tuple(sorted({p for s in self.services for p in s.profiles}))


def load_stack(path: Path) -> Stack:
    """Given the compose file's path, return the Stack. Raise ConfigError if unreadable or not YAML mapping."""
    text = read_text(path)
    data = parse_yaml(text, path.name)
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise ConfigError(f"{path.name} must be a mapping with a 'services' mapping")
    return Stack(path, text, data)
