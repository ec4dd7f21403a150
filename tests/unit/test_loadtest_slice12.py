"""Slice 12's verify: each scenario's criteria become the slice's checks; nothing to watch is no pass."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ops.config import Settings, load_settings
from ops.errors import ServiceError
from ops.loadtest import runner
from ops.loadtest.report import LoadReport, ScenarioResult, Usage
from ops.loadtest.scenarios import Scenario
from ops.secrets import init_secrets
from ops.slices import slice_12
from ops.slices.base import Target

TARGET = Target("http://127.0.0.1:9", "sk-x", "", "pk", "sk")


def _settings(project: Path) -> Settings:
    settings = load_settings(project)
    init_secrets(settings.env_example, settings.env_file)
    return load_settings(project)


def test_without_a_compose_project_slice_12_fails_saying_where_it_runs() -> None:
    checks = slice_12.verify(TARGET)
    assert [(c.name, c.ok) for c in checks] == [("load test", False)]
    assert "make slice-12" in checks[0].detail


def test_each_scenario_s_criteria_are_the_slice_s_checks(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(gateway: runner.Gateway, scenarios: list[Scenario], watch: Any, **options: Any) -> LoadReport:
        seen.update(gateway=gateway, scenarios=scenarios, **options)
        usage = (Usage("litellm", 300, 448, 90, 50, 2.0),)
        steady = ScenarioResult(scenarios[0], 30, 300, 0, 900, 1500, 1800, 2000, {}, (), usage, 400, 4096)
        spike = dataclasses.replace(steady, scenario=scenarios[1], p95_ms=7000.0, time_factor=2.0)
        return LoadReport(gateway.url, "gpt-4", 0.1, (steady, spike))

    monkeypatch.setattr(runner, "run_scenarios", fake_run)
    target = dataclasses.replace(TARGET, settings=_settings(project), time_factor=2.0)
    checks = slice_12.verify(target, scale=0.01)
    assert [s.seconds for s in seen["scenarios"]] == [3.0, 2.0, 18.0]  # the plan's three, scaled
    assert seen["time_factor"] == 2.0 and seen["gateway"] == runner.Gateway("http://127.0.0.1:9", "sk-x")
    failed = [c.name for c in checks if not c.ok]
    assert failed == ["spike: p95 under 6 s"]  # the plan's 3 s times the target's factor
    assert len(checks) == 12 and checks[0].name == "steady: load ran"


def test_a_load_test_that_cannot_start_is_a_failed_check(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> LoadReport:
        raise ServiceError("the gateway at http://127.0.0.1:9 is unreachable: ConnectError")

    monkeypatch.setattr(runner, "run_scenarios", unreachable)
    checks = slice_12.verify(dataclasses.replace(TARGET, settings=_settings(project)))
    assert [(c.name, c.ok, c.detail) for c in checks] == [
        ("load test", False, "the gateway at http://127.0.0.1:9 is unreachable: ConnectError")
    ]
