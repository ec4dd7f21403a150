"""`ops health`: every service of the running stack asked at once, each by its own protocol.

One probe module per service in ``ops.health.probes`` (NAME and
``probe(settings, timeout) -> ProbeResult``; PROBES lists them). ``run_health``
starts each probe in a thread of its own and waits for all of them together, at
most ``timeout`` seconds (and a short grace for a probe's own timeout message):
a probe still running then is reported down, "no answer within N s", and left
behind (a daemon thread: it cannot keep the process alive). So a hung service
costs its timeout, not the sum of everyone's. Where each service is asked, and
why: docs/HEALTH.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from ops.config import Settings
from ops.errors import ConfigError, OpsError
from ops.health.base import HealthReport, Probe, ProbeResult, milliseconds, one_line

__all__ = ["HealthReport", "ProbeResult", "health_text", "run_health"]

GRACE = 0.2  # seconds past the timeout for a probe that timed out by itself to say so
MAX_TIMEOUT = 60.0  # seconds: a service slower than a minute is down for the every-minute alert check anyway


def _run_one(probe: Probe, settings: Settings, timeout: float, results: dict[str, ProbeResult], lock: threading.Lock) -> None:
    started = time.perf_counter()
    try:
        result = probe.probe(settings, timeout)
    except OpsError as exc:  # a setting the probe needs is missing or malformed: this service's line says which
        result = ProbeResult(probe.NAME, False, milliseconds(started), one_line(str(exc)))
    except Exception as exc:  # a bug in one probe must not hide the others' answers
        result = ProbeResult(probe.NAME, False, milliseconds(started), one_line(f"the probe failed: {type(exc).__name__}: {exc}"))
    with lock:
        results[probe.NAME] = result


def run_health(
    settings: Settings, *, timeout: float = 3.0, only: tuple[str, ...] = (), probes: Sequence[Probe] | None = None
) -> HealthReport:
    """Given Settings, probe every service (or those named in only) in parallel; return their results in PROBES order.

    probes replaces the registry (tests). Raise ConfigError if vps.env is missing, timeout is not
    more than 0 and at most MAX_TIMEOUT seconds, or only names no probe.
    """
    if not 0 < timeout <= MAX_TIMEOUT:  # also NaN; inf or 1e12 would overflow the threads' join
        raise ConfigError(f"the health timeout must be more than 0 s and at most {MAX_TIMEOUT:g} s, got {timeout:g}")
    if not settings.env_file_present:
        raise ConfigError(f"{settings.env_file} not found: ops health reads the services' addresses and passwords there")
    if probes is None:
        from ops.health.probes import PROBES

        probes = PROBES
    names = [p.NAME for p in probes]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise ConfigError(f"no health probe for {', '.join(unknown)}: the services are {', '.join(names)}")
    chosen = [p for p in probes if not only or p.NAME in only]
    results: dict[str, ProbeResult] = {}
    lock = threading.Lock()
    started = time.perf_counter()
    threads = [
        threading.Thread(target=_run_one, args=(p, settings, timeout, results, lock), name=f"health-{p.NAME}", daemon=True)
        for p in chosen
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout + GRACE
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        done = dict(results)
    late = milliseconds(started)
    return HealthReport(
        tuple(done.get(p.NAME) or ProbeResult(p.NAME, False, late, f"no answer within {timeout:g} s") for p in chosen),
        timeout,
        milliseconds(started),
    )


def health_text(report: HealthReport) -> str:
    """Given a HealthReport, return its lines: one a service (state, latency, what it said), then the verdict.

    Here, not in ops/output.py: that module imports the benchmarks, which costs `ops health` half a second.
    """
    lines = []
    for r in report.results:
        state = "skip" if r.skipped else "ok" if r.ok else "DOWN"
        latency = "-" if r.skipped else f"{r.latency_ms:.0f} ms"
        lines.append(f"{r.name:<10}{state:<6}{latency:>9}  {r.detail}")
    up = sum(r.ok and not r.skipped for r in report.results)
    skipped = sum(r.skipped for r in report.results)
    tail = f"{up} up" + (f", {skipped} skipped" if skipped else "") + f" in {report.elapsed_ms:.0f} ms"
    lines.append(f"OK: {tail}" if report.ok else f"DOWN: {', '.join(report.down)} ({tail})")
    return "\n".join(lines)
