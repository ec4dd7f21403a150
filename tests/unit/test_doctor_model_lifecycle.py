"""ops doctor's model-lifecycle rule: retired and retiring models, and prices, against LiteLLM's price map.

The table runs the pure rule against a small map with a fixed today; the
shipped litellm-config.yaml and the models it had before (gpt-4-turbo,
claude-3-5-sonnet-20241022, gemini-2.0-flash) run against the map that
LiteLLM 1.100.5 ships.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.config import load_settings
from ops.doctor import Finding, run_doctor
from ops.doctor.rules.model_lifecycle import NAME, lifecycle_findings
from ops.errors import ConfigError
from ops.gateway.litellm_config import (
    Deployment,
    bundled_price_map,
    deployments,
    load_config,
    load_price_map,
    lookup_model,
)
from tests.conftest import REPO
from tests.unit.cli import run_ops

TODAY = date(2026, 11, 24)
PRICES = {"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}
MAP: dict[str, dict[str, Any]] = {
    "old-model": {"litellm_provider": "openai", **PRICES, "deprecation_date": "2026-10-23"},
    "today-model": {"litellm_provider": "openai", **PRICES, "deprecation_date": "2026-11-24"},
    "soon-model": {"litellm_provider": "openai", **PRICES, "deprecation_date": "2027-01-23"},  # 60 days
    "later-model": {"litellm_provider": "openai", **PRICES, "deprecation_date": "2027-01-24"},  # 61 days
    "far-model": {"litellm_provider": "openai", **PRICES, "deprecation_date": "2030-01-01"},
    "undated-model": {"litellm_provider": "openai", **PRICES},
    "openrouter/google/gone-flash": {"litellm_provider": "openrouter", **PRICES, "deprecation_date": "2026-06-01"},
    "vertex-only-model": {"litellm_provider": "vertex_ai-language-models", **PRICES, "deprecation_date": "2026-06-01"},
    "bad-date-model": {"litellm_provider": "openai", **PRICES, "deprecation_date": "soon"},
}


def deployment(model: str, **params: Any) -> Deployment:
    return Deployment("gpt-4", model, {"model": model, **params})


# case: (deployment, expected (severity, message part) per finding; [] means the deployment passes)
CASES: dict[str, tuple[Deployment, list[tuple[str, str]]]] = {
    "past its date": (deployment("openai/old-model", **PRICES), [("error", "deprecated on 2026-10-23")]),
    "retired today": (deployment("openai/today-model", **PRICES), [("error", "deprecated on 2026-11-24")]),
    "within 60 days": (deployment("openai/soon-model", **PRICES), [("warning", "deprecated on 2027-01-23, in 60 days")]),
    "61 days away": (deployment("openai/later-model", **PRICES), []),
    "far future": (deployment("openai/far-model", **PRICES), []),
    "no date in the map": (deployment("openai/undated-model", **PRICES), []),
    "provider-prefixed key": (
        deployment("openrouter/google/gone-flash", **PRICES),
        [("error", "deprecated on 2026-06-01 (deprecation_date of openrouter/google/gone-flash")],
    ),
    "key in another case": (deployment("openai/Old-Model", **PRICES), [("error", "deprecated on 2026-10-23")]),
    "absent with prices": (deployment("anthropic/claude-3-5-sonnet-20241022", **PRICES), []),
    "absent without prices": (
        deployment("anthropic/claude-3-5-sonnet-20241022"),
        [
            ("error", "has no input_cost_per_token: anthropic/claude-3-5-sonnet-20241022 is not in LiteLLM's price map"),
            ("error", "has no output_cost_per_token: anthropic/claude-3-5-sonnet-20241022 is not in LiteLLM's price map"),
        ],
    ),
    "another provider's entry is not this model's": (deployment("gemini/vertex-only-model", **PRICES), []),
    "in the map without a price": (
        deployment("openai/far-model", input_cost_per_token=0.000001),
        [("error", "has no output_cost_per_token: state it (far-model costs 2e-06 in LiteLLM's price map")],
    ),
    "price not a number": (
        deployment("openai/far-model", input_cost_per_token="0.000001", output_cost_per_token=0.000002),
        [("error", "has no input_cost_per_token")],
    ),
    "price differs from the map": (
        deployment("openai/far-model", input_cost_per_token=0.00001, output_cost_per_token=0.000002),
        [("warning", "input_cost_per_token 1e-05 differs from 1e-06 for far-model")],
    ),
    "unreadable date": (deployment("openai/bad-date-model", **PRICES), [("warning", "cannot read the deprecation_date")]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_deployment_is_judged_by_the_map(case: str) -> None:
    given, expected = CASES[case]
    findings = lifecycle_findings([given], MAP, TODAY)
    assert [f.severity for f in findings] == [severity for severity, _ in expected], findings
    for finding, (_, part) in zip(findings, expected, strict=True):
        assert finding.rule == NAME
        assert part in finding.message, finding.message
        assert "'gpt-4'" in finding.message


def test_unreadable_map_still_demands_prices() -> None:
    findings = lifecycle_findings([deployment("openai/anything")], None, TODAY)
    assert [f.severity for f in findings] == ["error", "error"]
    assert "cannot be looked up in LiteLLM's price map" in findings[0].message


# What litellm-config.yaml deployed before this rule: three models past their
# deprecation_date in LiteLLM 1.100.5's map, and one it no longer lists at all.
OLD_MODELS = {
    "gpt-4": ("openai/gpt-4-turbo", 0.00001, 0.00003),
    "claude-3": ("anthropic/claude-3-5-sonnet-20241022", 0.000003, 0.000015),
    "gemini-2": ("gemini/gemini-2.0-flash", 0.0000001, 0.0000004),
    "cheap": ("openrouter/google/gemini-2.0-flash-001", 0.0000001, 0.0000004),
    "smart": ("openrouter/anthropic/claude-3.5-sonnet", 0.000003, 0.000015),
}


def old_config() -> dict[str, Any]:
    data = load_config(REPO / "litellm-config.yaml")
    for entry in data["model_list"]:
        model, price_in, price_out = OLD_MODELS[entry["model_name"]]
        entry["litellm_params"].update(model=model, input_cost_per_token=price_in, output_cost_per_token=price_out)
    return data


@pytest.fixture(scope="module")
def shipped_map() -> dict[str, dict[str, Any]]:
    return load_price_map(bundled_price_map())


def test_shipped_config_passes_on_the_day_it_was_chosen(shipped_map: dict[str, dict[str, Any]]) -> None:
    data = load_config(REPO / "litellm-config.yaml")
    assert [d.group for d in deployments(data)] == ["gpt-4", "claude-3", "gemini-2", "cheap", "smart"]
    assert lifecycle_findings(deployments(data), shipped_map, TODAY) == []
    for item in deployments(data):
        assert lookup_model(shipped_map, item.model) is not None, f"{item.model} must be in the price map"


def test_old_models_fail(shipped_map: dict[str, dict[str, Any]]) -> None:
    findings = lifecycle_findings(deployments(old_config()), shipped_map, TODAY)
    assert findings == [
        Finding(NAME, "error", message)
        for message in (
            "model 'gpt-4' calls openai/gpt-4-turbo, deprecated on 2026-10-23 (deprecation_date of gpt-4-turbo in "
            "LiteLLM's price map): move the group to a current model (docs/GATEWAY.md, 'Moving a group to a newer model')",
            "model 'gemini-2' calls gemini/gemini-2.0-flash, deprecated on 2026-06-01 (deprecation_date of "
            "gemini/gemini-2.0-flash in LiteLLM's price map): move the group to a current model (docs/GATEWAY.md, "
            "'Moving a group to a newer model')",
            "model 'cheap' calls openrouter/google/gemini-2.0-flash-001, deprecated on 2026-06-01 (deprecation_date of "
            "openrouter/google/gemini-2.0-flash-001 in LiteLLM's price map): move the group to a current model "
            "(docs/GATEWAY.md, 'Moving a group to a newer model')",
        )
    ]
    assert lookup_model(shipped_map, "anthropic/claude-3-5-sonnet-20241022") is None


def test_doctor_refuses_the_old_models(project: Path) -> None:
    path = project / "litellm-config.yaml"
    path.write_text(yaml.safe_dump(old_config()))
    report = run_doctor(load_settings(project), only=[NAME])
    assert not report.ok
    assert {f.message.split(" calls ")[0] for f in report.findings if f.severity == "error"} == {
        "model 'gpt-4'",
        "model 'gemini-2'",
        "model 'cheap'",
    }


def test_doctor_names_a_missing_price_with_the_maps_price(project: Path) -> None:
    path = project / "litellm-config.yaml"
    text = path.read_text()
    path.write_text(text.replace("      output_cost_per_token: 0.00001\n", "", 1))
    report = run_doctor(load_settings(project), only=[NAME])
    assert [(f.severity, f.message) for f in report.findings] == [
        (
            "error",
            "model 'claude-3' has no output_cost_per_token: state it (claude-sonnet-5 costs 1e-05 in LiteLLM's price map, "
            "which drops retired models; budgets would then count it as $0)",
        )
    ]


def test_a_litellm_without_its_price_map_is_a_clear_error(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken litellm install (no bundled map) is named by the rule, and prices are still checked."""
    fake = tmp_path / "site" / "litellm"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    monkeypatch.delitem(sys.modules, "litellm", raising=False)  # found on sys.path, as a fresh process would
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    proc = run_ops("doctor", "--project-dir", str(project), "--json", "--rule", NAME)
    assert proc.returncode == 1, proc.stderr
    findings = json.loads(proc.stdout)["findings"]
    assert findings == [
        {
            "rule": NAME,
            "severity": "error",
            "message": "cannot check whether the models are retired: the installed litellm has no bundled price map at "
            f"{fake / 'model_prices_and_context_window_backup.json'}; reinstall it (make install)",
        }
    ]


def test_unreadable_map_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "map.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_price_map(bad)
    with pytest.raises(ConfigError, match="cannot read LiteLLM's price map"):
        load_price_map(tmp_path / "missing.json")
