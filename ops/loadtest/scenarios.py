"""The plan's load test scenarios (slice 12) and how --scale shortens them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ops.errors import OpsError

MIN_SECONDS = 2.0  # a scaled scenario still runs long enough for every user to send a request or two


@dataclass(frozen=True)
class Scenario:
    """One row of the plan's load test table: users kept busy for seconds, and the success rate they need."""

    name: str
    users: int
    seconds: float
    min_success_rate: float

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


# source: the plan (shared/seeds 004, slice 12 "Load Test Plan"): steady 10 users 5 min > 99 %,
# spike 100 users 1 min > 95 %, sustained 50 users 30 min > 98 %
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("steady", 10, 300, 0.99),
    Scenario("spike", 100, 60, 0.95),
    Scenario("sustained", 50, 1800, 0.98),
)


def pick(names: tuple[str, ...] = (), scale: float = 1.0) -> list[Scenario]:
    """Given scenario names (none: all three, in the plan's order) and a scale, return them with durations scaled.

    Users are not scaled (concurrency is what the test is about); each duration is multiplied by scale, and no
    shorter than MIN_SECONDS. Raise OpsError for an unknown name or a scale that is not above 0.
    """
    if not scale > 0:
        raise OpsError(f"--scale must be above 0 (0.01 runs 5 minutes in 3 s), got {scale}")
    known = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise OpsError(f"unknown scenario {', '.join(unknown)}: the plan has {', '.join(known)}")
    chosen = [s for s in SCENARIOS if not names or s.name in names]
    return [dataclasses.replace(s, seconds=max(MIN_SECONDS, s.seconds * scale)) for s in chosen]
