"""The health gate: `ops health` asked again and again until every service passes, or a deadline.

Deploy, upgrade and recover start containers and then wait here: a container Docker calls running
is not yet a service that answers (LiteLLM loads its config, n8n and Langfuse migrate their
databases), so the gate asks each service by its own protocol (ops.health) rather than trusting
Docker's state. A ConfigError from the health run (vps.env missing, a service no probe knows) ends
the wait at once: waiting longer cannot fix it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ops.config import Settings
from ops.errors import ConfigError, ServiceError
from ops.health import HealthReport, run_health
from ops.health.base import one_line

PROBE_TIMEOUT = 3.0  # seconds each round's probes may take, as `ops health` by default
MIN_PROBE_TIMEOUT = 0.5  # seconds: the last round near the deadline still gives a probe a fair chance


class NotHealthy(ServiceError):
    """The services did not all pass their health probe in time; report is the last round's."""

    def __init__(self, message: str, report: HealthReport) -> None:
        super().__init__(message)
        self.report = report


def down_text(report: HealthReport) -> str:
    """Given a HealthReport, return its failing services as one line: "name (what it said), ..."."""
    return ", ".join(f"{r.name} ({one_line(r.detail, 120)})" for r in report.results if not r.ok)


def wait_healthy(
    settings: Settings,
    services: tuple[str, ...] = (),
    *,
    timeout: float = 120.0,
    interval: float = 2.0,
    health: Callable[..., HealthReport] = run_health,
) -> HealthReport:
    """Given Settings and services (every probe when empty), poll health until all pass; return that report.

    health is called as health(settings, timeout=..., only=services) (ops.health.run_health's signature).
    Raise NotHealthy (a ServiceError) naming what is still down, and what it said, once timeout seconds
    have passed; ConfigError if timeout or interval is not a positive number, or at once when the
    health run raises one.
    """
    if not timeout > 0 or timeout == float("inf"):  # also NaN
        raise ConfigError(f"the health gate's timeout must be a positive number of seconds, got {timeout:g}")
    if not interval > 0 or interval == float("inf"):
        raise ConfigError(f"the health gate's interval must be a positive number of seconds, got {interval:g}")
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        report = health(settings, timeout=max(MIN_PROBE_TIMEOUT, min(PROBE_TIMEOUT, remaining)), only=services)
        if report.ok:
            return report
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotHealthy(f"not healthy after {timeout:g} s: {down_text(report)}", report)
        time.sleep(min(interval, remaining))
