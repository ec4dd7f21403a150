"""The load test's report: the plan's criteria judged on synthetic measurements, and `ops loadtest`'s exit code."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ops.errors import OpsError
from ops.loadtest import runner
from ops.loadtest.locust_run import status_key
from ops.loadtest.report import LoadReport, ScenarioResult, Usage, report_text
from ops.loadtest.scenarios import MIN_SECONDS, SCENARIOS, Scenario, pick
from ops.loadtest.watch import _docker_memory_mb
from tests.unit.cli import run_ops

STEADY = Scenario("steady", 10, 3.0, 0.99)
LITELLM = Usage("litellm", 300, 448, 80, 40, 1.2)
REDIS = Usage("redis", 8, 160, 3, 1, 0.01)


def result(**changes: object) -> ScenarioResult:
    passing = ScenarioResult(STEADY, 3.0, 120, 0, 900, 1800, 2200, 2500, {}, (), (LITELLM, REDIS), 320, 4096)
    return dataclasses.replace(passing, **changes)  # type: ignore[arg-type]


def failed_names(r: ScenarioResult) -> list[str]:
    return [c.name for c in r.criteria() if not c.ok]


def test_a_run_within_every_criterion_passes() -> None:
    report = LoadReport("http://gw", "gpt-4", 0.01, (result(),))
    assert report.ok and report.failed == []
    data = report.to_dict()
    assert data["ok"] is True
    scenario = data["scenarios"][0]
    assert {"requests", "p50_ms", "p95_ms", "p99_ms", "errors_by_status", "usage", "criteria"} <= scenario.keys()
    assert [c["name"] for c in scenario["criteria"]] == [
        "load ran",
        "success rate over 99%",
        "no 5xx",
        "p95 under 3 s",
        "memory under 90%",
        "no restarts",
    ]
    assert scenario["usage"][0]["cpu_ms_per_request"] == 10.0  # 1.2 s of CPU over 120 requests


@pytest.mark.parametrize(
    ("changes", "failed"),
    [
        ({"errors_by_status": {"502": 1}, "failures": 1, "requests": 1000}, ["no 5xx"]),
        ({"errors_by_status": {"429": 2}, "failures": 2}, ["success rate over 99%"]),  # 118/120: 98.3 %
        ({"p95_ms": 3000.0}, ["p95 under 3 s"]),
        ({"usages": (dataclasses.replace(LITELLM, peak_memory_mb=420), REDIS)}, ["memory under 90%"]),  # 94 % of 448
        ({"stack_peak_mb": 3700.0}, ["memory under 90%"]),  # the VM's 4096 MB
        ({"usages": (dataclasses.replace(LITELLM, restarts=1), REDIS)}, ["no restarts"]),
        ({"usages": (dataclasses.replace(LITELLM, problem="OOM-killed"), REDIS)}, ["no restarts"]),
        ({"usages": ()}, ["memory under 90%", "no restarts"]),  # nothing watched is no pass
        ({"requests": 0, "failures": 0}, ["load ran", "success rate over 99%", "p95 under 3 s"]),
    ],
)
def test_each_criterion_fails_on_its_own(changes: dict[str, object], failed: list[str]) -> None:
    assert failed_names(result(**changes)) == failed


def test_the_report_names_each_failed_criterion_with_its_scenario() -> None:
    spike = result(scenario=Scenario("spike", 100, 2.0, 0.95), p95_ms=4200.0, errors_by_status={"500": 3}, failures=3)
    report = LoadReport("http://gw", "gpt-4", 0.01, (result(), spike))
    assert not report.ok
    assert [f.split(" (")[0] for f in report.failed] == ["spike: no 5xx", "spike: p95 under 3 s"]
    assert "FAILED: spike: no 5xx" in report_text(report)


def test_ops_loadtest_exits_1_naming_the_failed_criterion(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failing = LoadReport("http://gw", "gpt-4", 0.01, (result(p95_ms=5000.0),))
    monkeypatch.setattr(runner, "run_loadtest", lambda *a, **k: failing)
    ran = run_ops("loadtest", "--project-dir", str(project), "--scale", "0.01")
    assert ran.returncode == 1
    assert "FAILED: steady: p95 under 3 s" in ran.stdout
    ran = run_ops("loadtest", "--project-dir", str(project), "--json")
    assert ran.returncode == 1
    assert json.loads(ran.stdout)["failed"][0].startswith("steady: p95 under 3 s")


def test_ops_loadtest_exits_0_when_every_criterion_passes(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "run_loadtest", lambda *a, **k: LoadReport("http://gw", "gpt-4", 1.0, (result(),)))
    ran = run_ops("loadtest", "--project-dir", str(project), "--json")
    assert ran.returncode == 0 and json.loads(ran.stdout)["ok"] is True


def test_a_bad_scale_is_one_clear_error(project: Path) -> None:
    ran = run_ops("loadtest", "--project-dir", str(project), "--scale", "0")
    assert ran.returncode == 2
    assert ran.stderr.strip() == "error: --scale must be above 0 (0.01 runs 5 minutes in 3 s), got 0.0"


def test_the_plan_s_scenarios_scaled() -> None:
    assert [(s.name, s.users, s.seconds, s.min_success_rate) for s in SCENARIOS] == [
        ("steady", 10, 300, 0.99),
        ("spike", 100, 60, 0.95),
        ("sustained", 50, 1800, 0.98),
    ]
    assert [(s.name, s.users, s.seconds) for s in pick((), 0.01)] == [
        ("steady", 10, 3.0),
        ("spike", 100, MIN_SECONDS),  # 0.6 s would end before a request comes back
        ("sustained", 50, 18.0),
    ]
    assert [s.name for s in pick(("sustained", "steady"))] == ["steady", "sustained"]  # the plan's order
    with pytest.raises(OpsError, match="unknown scenario ramp: the plan has steady, spike, sustained"):
        pick(("ramp",))


def test_errors_are_keyed_by_status_or_as_connection_errors() -> None:
    assert status_key(503, RuntimeError("x")) == "503"
    assert status_key(0, ConnectionRefusedError()) == "connection (ConnectionRefusedError)"


def test_docker_memory_is_counted_without_the_page_cache() -> None:
    v2 = {"memory_stats": {"usage": 300 * 2**20, "stats": {"inactive_file": 100 * 2**20}}}
    v1 = {"memory_stats": {"usage": 300 * 2**20, "stats": {"total_inactive_file": 50 * 2**20}}}
    assert (_docker_memory_mb(v2), _docker_memory_mb(v1), _docker_memory_mb({})) == (200, 250, 0)
