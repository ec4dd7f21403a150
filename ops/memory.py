"""The memory budget: every container limit against the VM less what the OS and Docker keep.

Given the Stack and Settings, return a MemoryReport with one row per service
and the total for each combination of profiles. The compose files named in
OPS_COMPOSE_OVERRIDES count too (docker-compose.litellm-db.yml raises LiteLLM's
limit), as compose merges them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ops.config import Settings
from ops.errors import ConfigError
from ops.stack import Service, Stack


@dataclass(frozen=True)
class MemoryRow:
    service: str
    limit_mb: int | None
    profiles: tuple[str, ...]
    one_shot: bool


@dataclass(frozen=True)
class ProfileTotal:
    profiles: tuple[str, ...]
    total_mb: int

    @property
    def label(self) -> str:
        return "core" + "".join(f"+{p}" for p in self.profiles)


@dataclass(frozen=True)
class MemoryReport:
    vm_mb: int
    reserved_mb: int
    budget_mb: int
    enabled_profiles: tuple[str, ...]
    swap_mb: int = 0
    rows: list[MemoryRow] = field(default_factory=list)
    totals: list[ProfileTotal] = field(default_factory=list)

    @property
    def total_mb(self) -> int:
        """The sum of limits of the long-running services the enabled profiles start."""
        return total_for(self.rows, self.enabled_profiles)

    def to_dict(self) -> dict[str, object]:
        return {
            "vm_mb": self.vm_mb,
            "reserved_mb": self.reserved_mb,
            "budget_mb": self.budget_mb,
            "swap_mb": self.swap_mb,
            "total_mb": self.total_mb,
            "enabled_profiles": list(self.enabled_profiles),
            "services": [
                {"service": r.service, "limit_mb": r.limit_mb, "profiles": list(r.profiles), "one_shot": r.one_shot}
                for r in self.rows
            ],
            "profiles": [{"profiles": t.label, "total_mb": t.total_mb} for t in self.totals],
        }


def total_for(rows: list[MemoryRow], profiles: tuple[str, ...]) -> int:
    """Sum the limits of long-running services enabled by profiles (one-shot jobs finish before the rest start)."""
    return sum(r.limit_mb or 0 for r in rows if not r.one_shot and (not r.profiles or any(p in profiles for p in r.profiles)))


class _ComposeLoader(yaml.SafeLoader):
    """SafeLoader that reads compose's merge tags (!override, !reset) as plain values."""


def _compose_tag(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_ComposeLoader.add_multi_constructor("!", _compose_tag)


def _override_services(path: Path) -> dict[str, dict[str, Any]]:
    """Given an override compose file, return its services. Raise ConfigError if it is not a compose mapping."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_ComposeLoader)  # a SafeLoader
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the compose override {path.name}: {exc}") from exc
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        raise ConfigError(f"the compose override {path.name} has no 'services' mapping")
    return {str(name): spec or {} for name, spec in services.items()}


def merged_services(stack: Stack, overrides: tuple[Path, ...]) -> list[Service]:
    """Given the stack and override files, return each service with the overrides' limits, environment and profiles merged."""
    specs = {s.name: dict(s.spec) for s in stack.services}
    for path in overrides:
        for name, override in _override_services(path).items():
            spec = specs.setdefault(name, {})
            for key, value in override.items():
                if key == "deploy" and isinstance(value, dict):
                    limits = ((value.get("resources") or {}).get("limits") or {}).get("memory")
                    if limits is not None:
                        spec["deploy"] = {"resources": {"limits": {"memory": limits}}}
                elif key == "environment" and isinstance(value, dict) and isinstance(spec.get(key) or {}, dict):
                    spec[key] = {**(spec.get(key) or {}), **value}
                elif key in ("profiles", "restart", "mem_limit"):
                    spec[key] = value
    return [Service(name, spec) for name, spec in specs.items()]


def memory_report(stack: Stack, settings: Settings) -> MemoryReport:
    """Given the stack and settings, return the budget with a total per profile combination.

    Raise ConfigError if a limit, a reserve or an override file is malformed.
    """
    services = merged_services(stack, settings.compose_overrides)
    rows = [MemoryRow(s.name, s.memory_mb, s.profiles, s.one_shot) for s in services]
    names = tuple(sorted({p for s in services for p in s.profiles}))
    combos = [c for n in range(len(names) + 1) for c in itertools.combinations(names, n)]
    return MemoryReport(
        vm_mb=settings.vm_memory_mb,
        reserved_mb=settings.reserved_mb,
        budget_mb=settings.memory_budget_mb,
        enabled_profiles=tuple(p for p in settings.profiles if p in names),
        swap_mb=settings.swap_allowance_mb,
        rows=rows,
        totals=[ProfileTotal(c, total_for(rows, c)) for c in combos],
    )
