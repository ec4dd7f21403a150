"""The plan's slices: one module each, registered here by number.

``run_verify`` runs a slice's success criteria against the running stack.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ops.errors import OpsError
from ops.slices.base import Check, Target

PLAN_SLICES = range(1, 13)
# one module per slice of the plan: ops/slices/slice_01.py ... slice_12.py
SLICES: dict[int, ModuleType] = {n: importlib.import_module(f"ops.slices.slice_{n:02d}") for n in PLAN_SLICES}


@dataclass
class VerifyReport:
    number: int
    title: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"slice": self.number, "title": self.title, "ok": self.ok, "checks": [c.to_dict() for c in self.checks]}


def registered() -> dict[int, ModuleType]:
    return dict(SLICES)


def get_slice(number: int) -> ModuleType:
    """Return slice number's module. Raise OpsError if the plan has no such slice."""
    if number not in SLICES:
        raise OpsError(f"slice {number} does not exist: the plan has slices 1 to 12")
    return SLICES[number]


def run_verify(number: int, target: Target) -> VerifyReport:
    """Run slice number's success criteria against target; return every check, passed or not."""
    module = get_slice(number)
    return VerifyReport(number, module.TITLE, module.verify(target))
