"""The load test's report: what Locust measured and what the stack used, judged against the plan's criteria.

The plan's success criteria (slice 12): no 5xx under load, p95 latency under 3 s, memory under 90 %, no
container restarts, and each scenario's success rate. Every scenario is judged on all of them; the report
fails if any criterion of any scenario fails, and names each one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ops.loadtest.scenarios import Scenario
from ops.slices.base import Check as Criterion  # a criterion is a slice check: name, ok, what was seen

P95_LIMIT_MS = 3000.0
MEMORY_LIMIT = 0.90


@dataclass(frozen=True)
class Usage:
    """One container (or, in the local harness, one process tree) over a scenario."""

    name: str
    peak_memory_mb: float
    limit_mb: float | None  # its memory limit (the compose file's), None when it has none
    peak_cpu_percent: float  # of one core, over the sampling windows
    mean_cpu_percent: float
    cpu_seconds: float
    restarts: int = 0  # restarts during the scenario (RestartCount), or 1 for a process that exited
    problem: str = ""  # OOM-killed, exited, gone

    @property
    def memory_fraction(self) -> float | None:
        return self.peak_memory_mb / self.limit_mb if self.limit_mb else None

    def to_dict(self, requests: int = 0) -> dict[str, Any]:
        fraction = self.memory_fraction
        return {
            "name": self.name,
            "peak_memory_mb": round(self.peak_memory_mb, 1),
            "limit_mb": self.limit_mb,
            "peak_memory_percent": round(fraction * 100, 1) if fraction is not None else None,
            "peak_cpu_percent": round(self.peak_cpu_percent, 1),
            "mean_cpu_percent": round(self.mean_cpu_percent, 1),
            "cpu_seconds": round(self.cpu_seconds, 2),
            "cpu_ms_per_request": round(self.cpu_seconds * 1000 / requests, 2) if requests else None,
            "restarts": self.restarts,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class ScenarioResult:
    """What one scenario's Locust run measured, and what the watched containers used meanwhile."""

    scenario: Scenario
    seconds: float  # as run
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors_by_status: dict[str, int] = field(default_factory=dict)  # "503": 4, "connection": 1
    error_samples: tuple[str, ...] = ()
    usages: tuple[Usage, ...] = ()
    stack_peak_mb: float = 0.0  # the watched containers' memory together, at its highest
    vm_memory_mb: int | None = None  # what the stack's memory is judged against
    time_factor: float = 1.0  # the p95 limit is P95_LIMIT_MS times this (OPS_VERIFY_TIME_FACTOR: 1 on the VM)

    @property
    def success_rate(self) -> float:
        return (self.requests - self.failures) / self.requests if self.requests else 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.errors_by_status.items() if status.isdigit() and int(status) >= 500)

    def criteria(self) -> list[Criterion]:
        """Return the plan's criteria for this scenario, each passed or failed, with what was seen."""
        s = self.scenario
        errors = ", ".join(f"{status}: {n}" for status, n in sorted(self.errors_by_status.items())) or "none"
        p95_limit = P95_LIMIT_MS * self.time_factor
        scaled = f"; the plan's {P95_LIMIT_MS / 1000:g} s x{self.time_factor:g}" if self.time_factor != 1 else ""
        return [
            Criterion("load ran", self.requests > 0, f"Locust completed {self.requests} requests in {self.seconds:.1f} s"),
            Criterion(
                f"success rate over {s.min_success_rate:.0%}",
                self.requests > 0 and self.success_rate > s.min_success_rate,
                f"{self.success_rate:.2%} ({self.failures} of {self.requests} failed; errors by status: {errors})",
            ),
            Criterion("no 5xx", self.server_errors == 0, f"{self.server_errors} answers 5xx (errors by status: {errors})"),
            Criterion(
                f"p95 under {p95_limit / 1000:g} s",
                self.requests > 0 and self.p95_ms < p95_limit,
                f"p95 {self.p95_ms / 1000:.2f} s (p50 {self.p50_ms / 1000:.2f} s, p99 {self.p99_ms / 1000:.2f} s{scaled})",
            ),
            self._memory(),
            self._restarts(),
        ]

    def _memory(self) -> Criterion:
        name = f"memory under {MEMORY_LIMIT:.0%}"
        if not self.usages:
            return Criterion(name, False, "nothing was watched: no container or process to measure")
        over = [u for u in self.usages if (u.memory_fraction or 0) >= MEMORY_LIMIT]
        parts = [f"{u.name} {u.peak_memory_mb:.0f}/{u.limit_mb:.0f} MB" for u in over]
        stack_fraction = self.stack_peak_mb / self.vm_memory_mb if self.vm_memory_mb else 0.0
        if stack_fraction >= MEMORY_LIMIT:
            parts.append(f"the stack {self.stack_peak_mb:.0f} of the VM's {self.vm_memory_mb} MB")
        if parts:
            return Criterion(name, False, "at or over 90 % of its limit: " + "; ".join(parts))
        limited = [u for u in self.usages if u.memory_fraction is not None]
        top = max(limited, key=lambda u: u.memory_fraction or 0.0) if limited else None
        highest = f"highest {top.name} {top.peak_memory_mb:.0f}/{top.limit_mb:.0f} MB" if top else "no limits set"
        vm = f"; the stack {self.stack_peak_mb:.0f} of {self.vm_memory_mb} MB" if self.vm_memory_mb else ""
        return Criterion(name, True, highest + vm)

    def _restarts(self) -> Criterion:
        hit = [u for u in self.usages if u.restarts or u.problem]
        if not self.usages:
            return Criterion("no restarts", False, "nothing was watched: no container or process to check")
        detail = "; ".join(f"{u.name}: {u.restarts} restart(s){', ' + u.problem if u.problem else ''}" for u in hit)
        return Criterion("no restarts", not hit, detail or f"none among {len(self.usages)} watched")

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.criteria())

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.scenario.to_dict(),
            "ran_seconds": round(self.seconds, 1),
            "requests": self.requests,
            "failures": self.failures,
            "success_rate": round(self.success_rate, 4),
            "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(self.p50_ms, 1),
            "p95_ms": round(self.p95_ms, 1),
            "p99_ms": round(self.p99_ms, 1),
            "max_ms": round(self.max_ms, 1),
            "errors_by_status": dict(sorted(self.errors_by_status.items())),
            "error_samples": list(self.error_samples),
            "usage": [u.to_dict(self.requests) for u in self.usages],
            "stack_peak_mb": round(self.stack_peak_mb, 1),
            "vm_memory_mb": self.vm_memory_mb,
            "criteria": [c.to_dict() for c in self.criteria()],
            "ok": self.ok,
        }


@dataclass(frozen=True)
class LoadReport:
    gateway_url: str
    model: str
    scale: float
    results: tuple[ScenarioResult, ...]

    @property
    def failed(self) -> list[str]:
        """Each failed criterion as 'scenario: criterion (what was seen)'."""
        return [f"{r.scenario.name}: {c.name} ({c.detail})" for r in self.results for c in r.criteria() if not c.ok]

    @property
    def ok(self) -> bool:
        return bool(self.results) and not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway_url,
            "model": self.model,
            "scale": self.scale,
            "scenarios": [r.to_dict() for r in self.results],
            "failed": self.failed,
            "ok": self.ok,
        }


def report_text(report: LoadReport) -> str:
    """Given a report, return it as lines for a terminal: each scenario, its containers and its criteria."""
    lines = [f"load test of {report.gateway_url} (model {report.model}, scale {report.scale:g})"]
    for r in report.results:
        s = r.scenario
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(r.errors_by_status.items())) or "no errors"
        lines.append("")
        lines.append(
            f"{s.name}: {s.users} users for {r.seconds:.0f} s: {r.requests} requests "
            f"({r.requests / max(r.seconds, 1e-9):.1f}/s), "
            f"p50 {r.p50_ms:.0f} ms, p95 {r.p95_ms:.0f} ms, p99 {r.p99_ms:.0f} ms; {errors}"
        )
        for u in r.usages:
            limit = f" of {u.limit_mb:.0f} ({(u.memory_fraction or 0):.0%})" if u.limit_mb else ""
            per = f", {u.cpu_seconds * 1000 / r.requests:.1f} ms/request" if r.requests else ""
            trouble = f", {u.problem}" if u.problem else ""
            lines.append(
                f"  {u.name:<16} memory peak {u.peak_memory_mb:.0f} MB{limit}; CPU peak {u.peak_cpu_percent:.0f} % "
                f"mean {u.mean_cpu_percent:.0f} %{per}; restarts {u.restarts}{trouble}"
            )
        for c in r.criteria():
            lines.append(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
    lines.append("")
    lines.append("PASSED: every criterion of every scenario" if report.ok else "FAILED: " + "; ".join(report.failed))
    return "\n".join(lines)
