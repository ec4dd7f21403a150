"""The memory budget: every container limit against the VM less what the OS and Docker keep.

Given the Stack and Settings, return a MemoryReport with one row per service
and the total for each combination of profiles.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from ops.config import Settings
from ops.stack import Stack


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


def memory_report(stack: Stack, settings: Settings) -> MemoryReport:
    """Given the stack and settings, return the budget with a total per profile combination."""
    rows = [MemoryRow(s.name, s.memory_mb, s.profiles, s.one_shot) for s in stack.services]
    names = stack.all_profiles
    combos = [c for n in range(len(names) + 1) for c in itertools.combinations(names, n)]
    return MemoryReport(
        vm_mb=settings.vm_memory_mb,
        reserved_mb=settings.reserved_mb,
        budget_mb=settings.memory_budget_mb,
        enabled_profiles=tuple(p for p in settings.profiles if p in names),
        rows=rows,
        totals=[ProfileTotal(c, total_for(rows, c)) for c in combos],
    )
