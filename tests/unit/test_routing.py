"""Routing by task: the plan's table, the routing notes' patterns, and the documented precedence."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ops.config import load_settings
from ops.errors import ConfigError
from ops.gateway.routing import load_rules, parse_rules, route_task
from tests.conftest import REPO
from tests.unit.cli import run_ops

# (task, model group, rule): the plan's slice-4 table and the notes' examples
CASES = [
    ("Explain AI", "gpt-4", "reasoning"),
    ("Explain quantum physics", "gpt-4", "reasoning"),
    ("2+2=?", "gemini-2", "default"),
    ("x" * 60_000, "claude-3", "long-context"),
    ("Fix typo: teh → the", "cheap", "small-fix"),
    ("a quick question", "cheap", "small-fix"),
    ("Refactor the parser", "smart", "code-review"),
    ("Please review this diff", "smart", "code-review"),
    # precedence: most capable match wins
    ("Analyze this architecture", "gpt-4", "reasoning"),
    ("quick fix of a complex bug", "gpt-4", "reasoning"),
    ("review and fix the typo", "smart", "code-review"),
    ("explain " + "y" * 60_000, "claude-3", "long-context"),
    # whole-word starts only: "prefix" is not "fix", "unreasonable" is not "reason"
    ("add a prefix", "gemini-2", "default"),
    ("an unreasonable request", "gemini-2", "default"),
    ("EXPLAIN IN CAPITALS", "gpt-4", "reasoning"),
]


@pytest.mark.parametrize(("task", "model", "rule"), CASES, ids=[c[0][:30] for c in CASES])
def test_repo_rules_route_the_plan_table(task: str, model: str, rule: str) -> None:
    chosen = route_task(load_settings(REPO), task)
    assert (chosen.model, chosen.rule) == (model, rule)


def test_exactly_50000_characters_is_not_long_context() -> None:
    assert route_task(load_settings(REPO), "z" * 50_000).model == "gemini-2"
    assert route_task(load_settings(REPO), "z" * 50_001).model == "claude-3"


def test_cli_json_prints_model_and_reason() -> None:
    proc = run_ops("route", "--project-dir", str(REPO), "--json", "Explain AI")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"model": "gpt-4", "reason": "Complex reasoning", "rule": "reasoning"}


def test_cli_needs_exactly_one_input() -> None:
    proc = run_ops("route", "--project-dir", str(REPO))
    assert proc.returncode == 2 and "give the task as TEXT or with --file" in proc.stderr


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"rules": [{"name": "r", "pattern": "x"}], "default": {"model": "gemini-2"}}, "rule 'r': has no model"),
        (
            {"rules": [{"name": "r", "pattern": "(", "model": "gpt-4"}], "default": {"model": "gemini-2"}},
            "pattern '(' is invalid",
        ),
        ({"rules": [{"name": "r", "model": "gpt-4"}], "default": {"model": "gemini-2"}}, "needs a pattern or min_chars"),
        (
            {"rules": [{"name": "r", "pattern": "x", "model": "gpt-5"}], "default": {"model": "gemini-2"}},
            "model 'gpt-5' is not a model group",
        ),
        ({"rules": [], "default": {"model": "nope"}}, "default model 'nope'"),
        (
            {"rules": [{"name": "r", "min_chars": "many", "model": "gpt-4"}], "default": {"model": "gemini-2"}},
            "min_chars must be a whole number",
        ),
        ({"default": {"model": "gemini-2"}}, "expected a mapping with a 'rules' list"),
    ],
)
def test_bad_rules_are_named(rules: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_rules(rules, "routing-rules.yaml", {"gpt-4", "claude-3", "gemini-2", "cheap", "smart"})


def test_broken_rules_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "routing-rules.yaml"
    path.write_text("rules: [\n")
    with pytest.raises(ConfigError, match=re.escape("routing-rules.yaml is not valid YAML")):
        load_rules(path)


# --- the router on rules of its own: precedence, both conditions, the names and reasons it fills in ---

OWN_RULES = parse_rules(
    {
        "rules": [
            {"name": "big-code", "model": "smart", "pattern": r"\bcode\b", "min_chars": 10, "reason": "Long code"},
            {"model": "cheap", "pattern": "CODE"},  # no name, no reason: rule-2 both
            {"name": "long", "model": "claude-3", "min_chars": 20},
        ],
        "default": {"model": "gemini-2"},  # no reason: "default"
    }
)


@pytest.mark.parametrize(
    ("task", "route"),
    [
        ("some code here", ("smart", "Long code", "big-code")),  # pattern and over 10 characters: both hold
        ("code", ("cheap", "rule-2", "rule-2")),  # too short for big-code: the next rule that matches
        ("Code!", ("cheap", "rule-2", "rule-2")),  # patterns ignore case
        ("x" * 21, ("claude-3", "long", "long")),
        ("x" * 20, ("gemini-2", "default", "default")),  # min_chars is "over", not "at least"
        ("a longer text with code in it", ("smart", "Long code", "big-code")),  # the first rule in file order wins
        ("", ("gemini-2", "default", "default")),
    ],
)
def test_the_first_rule_whose_conditions_all_hold_wins(task: str, route: tuple[str, str, str]) -> None:
    chosen = OWN_RULES.route(task)
    assert (chosen.model, chosen.reason, chosen.rule) == route


def test_without_known_models_any_model_name_is_taken() -> None:
    rules = parse_rules({"rules": [{"name": "r", "pattern": "x", "model": "not-checked"}], "default": {"model": "also"}})
    assert rules.route("x").model == "not-checked" and rules.route("y").model == "also"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"rules": ["reasoning"], "default": {"model": "gemini-2"}}, "routing-rules.yaml: rule 1: expected a mapping"),
        ({"rules": []}, "routing-rules.yaml: 'default' needs a model"),
        ({"rules": [], "default": {"reason": "x"}}, "routing-rules.yaml: 'default' needs a model"),
        (
            {"rules": [{"name": "r", "min_chars": -1, "model": "gpt-4"}], "default": {"model": "gemini-2"}},
            "routing-rules.yaml: rule 'r': min_chars must be a whole number, got -1",
        ),
        (
            {"rules": [{"name": "r", "min_chars": True, "model": "gpt-4"}], "default": {"model": "gemini-2"}},
            "routing-rules.yaml: rule 'r': min_chars must be a whole number, got True",
        ),
        ({"rules": [{"pattern": "x"}], "default": {"model": "gemini-2"}}, "routing-rules.yaml: rule 'rule-1': has no model"),
        ([], "routing-rules.yaml: expected a mapping with a 'rules' list"),
    ],
)
def test_more_bad_rules_are_named_exactly(rules: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rules(rules, "routing-rules.yaml", {"gpt-4", "gemini-2"})
    assert str(caught.value) == message
