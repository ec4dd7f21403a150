"""What a health probe returns, and the protocol every probe module follows.

A probe module has NAME (the service, as compose names it) and
``probe(settings, timeout) -> ProbeResult``: it asks its service one question by
the service's own protocol and answers within about timeout seconds. ``measure``
times the exchange; a probe raises ``Down`` with one line saying what is wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ops.config import Settings


@dataclass(frozen=True)
class ProbeResult:
    """One service's answer: ok, how long it took, and one line saying what was seen.

    skipped: the service is not part of this stack (a profile is off, nothing configured): ok, not probed.
    """

    name: str
    ok: bool
    latency_ms: float
    detail: str
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "skipped": self.skipped,
            "latency_ms": self.latency_ms,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class HealthReport:
    """Every probed service's result, in the registry's order, and how long the whole run took."""

    results: tuple[ProbeResult, ...]
    timeout: float = 3.0
    elapsed_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def down(self) -> list[str]:
        return [r.name for r in self.results if not r.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "down": self.down,
            "timeout_s": self.timeout,
            "elapsed_ms": self.elapsed_ms,
            "results": [r.to_dict() for r in self.results],
        }


class Probe(Protocol):
    """A probe module: NAME and probe()."""

    NAME: str

    def probe(self, settings: Settings, timeout: float) -> ProbeResult: ...


class Down(Exception):
    """The service did not answer as a ready one does; the message says what was seen, in one line."""


def one_line(text: str, limit: int = 200) -> str:
    """Given any text (an error, a response body), return it on one line, cut to limit characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def milliseconds(started: float) -> float:
    """Given a time.perf_counter() reading, return the milliseconds since, to 0.1 ms."""
    return round((time.perf_counter() - started) * 1000, 1)


def measure(name: str, exchange: Callable[[], str]) -> ProbeResult:
    """Given a service name and its exchange (returns what it saw, raises Down), return the timed ProbeResult."""
    started = time.perf_counter()
    try:
        detail = exchange()
    except Down as exc:
        return ProbeResult(name, False, milliseconds(started), one_line(str(exc)))
    return ProbeResult(name, True, milliseconds(started), one_line(detail))


def skipped(name: str, why: str) -> ProbeResult:
    """Given a service that is not part of this stack, return its result: ok, not probed, and why."""
    return ProbeResult(name, True, 0.0, why, skipped=True)
