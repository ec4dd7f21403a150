"""Slice 12: Load testing: the plan's three scenarios, scaled, against the stack's gateway, judged by its criteria.

Verify runs ``ops loadtest`` at SCALE (steady 30 s, spike 6 s, sustained 3 min) with the compose project's
containers watched through Docker, and returns each scenario's criteria as checks: Locust ran, the
success rate, no 5xx, p95 under 3 s, memory under 90 %, no restarts. The full-length test is
``ops loadtest`` (docs/PERFORMANCE.md, "Load test"). The gateway must answer from the mock provider,
not from real providers, whose budgets a load test would spend.
"""

from __future__ import annotations

from ops.errors import OpsError
from ops.slices.base import Check, Target

NUMBER = 12
TITLE = "Load testing"
REQUIRES: tuple[int, ...] = (5,)
SERVICES: tuple[str, ...] = ()
FILES: tuple[str, ...] = ()
DATABASES: tuple[str, ...] = ()
SCALE = 0.1


def verify(target: Target, scale: float = SCALE) -> list[Check]:
    """Run the scaled load test against target's gateway; return one check per scenario and criterion."""
    # imported here: ops.loadtest.report uses ops.slices.base, and ops.slices imports every slice
    from ops.loadtest.runner import Gateway, run_scenarios
    from ops.loadtest.scenarios import pick
    from ops.loadtest.watch import DockerWatch
    from ops.runtime.compose import Compose

    settings = target.settings
    if settings is None:
        return [Check("load test", False, "no compose project to watch: run it on the stack as `make slice-12`")]
    try:
        compose = Compose.for_settings(settings)
        report = run_scenarios(
            Gateway(target.gateway_url, target.master_key),
            pick((), scale),
            lambda: DockerWatch(compose),
            scale=scale,
            vm_memory_mb=settings.vm_memory_mb,
            time_factor=target.time_factor,  # the plan's 3 s, times OPS_VERIFY_TIME_FACTOR (1 on the VM)
        )
    except OpsError as exc:
        return [Check("load test", False, str(exc))]
    return [Check(f"{r.scenario.name}: {c.name}", c.ok, c.detail) for r in report.results for c in r.criteria()]
