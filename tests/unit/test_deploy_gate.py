"""The health gate (ops/runtime/gate.py): polls `ops health` until every service passes, or names what is down.

The health function is a fake returning scripted reports: the probes themselves are tested in test_health.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ops.config import Settings
from ops.envfile import read_env_file
from ops.errors import ConfigError, ServiceError
from ops.health import HealthReport, ProbeResult
from ops.runtime.gate import PROBE_TIMEOUT, NotHealthy, wait_healthy
from tests.conftest import REPO


def settings(tmp_path: Path) -> Settings:
    return Settings(tmp_path, env={}, example_env=read_env_file(REPO / "vps.env.example"), env_file_present=True)


def report(**states: bool) -> HealthReport:
    return HealthReport(
        tuple(ProbeResult(name, ok, 1.0, "fine" if ok else f"{name} refused the connection") for name, ok in states.items())
    )


class Scripted:
    """A health function answering with the given reports in turn (the last one again once they run out)."""

    def __init__(self, *reports: HealthReport) -> None:
        self.reports = list(reports)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, settings: Settings, **kwargs: Any) -> HealthReport:
        self.calls.append(kwargs)
        return self.reports.pop(0) if len(self.reports) > 1 else self.reports[0]


def test_waits_until_every_service_passes(tmp_path: Path) -> None:
    health = Scripted(report(litellm=False, redis=True), report(litellm=False, redis=True), report(litellm=True, redis=True))
    got = wait_healthy(settings(tmp_path), ("litellm", "redis"), timeout=30, interval=0.001, health=health)
    assert got.ok
    assert len(health.calls) == 3
    assert all(c["only"] == ("litellm", "redis") for c in health.calls)
    assert all(0 < c["timeout"] <= PROBE_TIMEOUT for c in health.calls)


def test_a_service_still_down_at_the_deadline_is_named_with_what_it_said(tmp_path: Path) -> None:
    health = Scripted(report(litellm=False, redis=True))
    with pytest.raises(NotHealthy) as caught:
        wait_healthy(settings(tmp_path), timeout=0.05, interval=0.01, health=health)
    assert isinstance(caught.value, ServiceError)
    assert "litellm (litellm refused the connection)" in str(caught.value)
    assert "redis" not in str(caught.value)
    assert caught.value.report.down == ["litellm"]
    assert health.calls[0]["only"] == ()


def test_a_config_error_ends_the_wait_at_once(tmp_path: Path) -> None:
    def health(settings: Settings, **kwargs: Any) -> HealthReport:
        raise ConfigError("no health probe for nosuch")

    with pytest.raises(ConfigError, match="nosuch"):
        wait_healthy(settings(tmp_path), ("nosuch",), timeout=600, health=health)


@pytest.mark.parametrize(
    ("timeout", "interval"), [(0, 1), (-1, 1), (float("nan"), 1), (float("inf"), 1), (10, 0), (10, float("nan"))]
)
def test_a_bad_timeout_or_interval_is_a_config_error(tmp_path: Path, timeout: float, interval: float) -> None:
    health = Scripted(report(litellm=True))
    with pytest.raises(ConfigError, match="health gate"):
        wait_healthy(settings(tmp_path), timeout=timeout, interval=interval, health=health)
    assert health.calls == []
