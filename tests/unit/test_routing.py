"""Routing by task: the plan's table, the routing notes' patterns, and the documented precedence."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ops.config import load_settings
from ops.errors import ConfigError
from ops.gateway.routing import load_rules, parse_rules, route_task
from tests.conftest import REPO

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
    proc = subprocess.run(
        [sys.executable, "-m", "ops.cli", "route", "--project-dir", str(REPO), "--json", "Explain AI"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(proc.stdout) == {"model": "gpt-4", "reason": "Complex reasoning", "rule": "reasoning"}


def test_cli_needs_exactly_one_input() -> None:
    proc = subprocess.run([sys.executable, "-m", "ops.cli", "route", "--project-dir", str(REPO)], capture_output=True, text=True)
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
