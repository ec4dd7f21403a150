"""ops.slices: the twelve slices of the plan, their order and prerequisites, and what each verifies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from ops.config import load_settings
from ops.errors import ConfigError, OpsError
from ops.journal import Entry
from ops.secrets import init_secrets
from ops.slices import get_slice, registered
from ops.slices.base import Target
from ops.slices.engine import prerequisite_problem
from ops.stack import load_stack
from tests.conftest import REPO
from tests.fakes.server import ThreadedServer
from tests.unit.cli import run_ops
from tests.unit.test_journal_status import row


@pytest.mark.parametrize(
    ("number", "message"), [(0, "slice 0 does not exist"), (13, "slice 13 does not exist"), (-1, "slice -1 does not exist")]
)
def test_bad_slice_numbers_are_named(number: int, message: str) -> None:
    with pytest.raises(OpsError, match=message):
        get_slice(number)


def test_target_refuses_placeholder_secrets(project: Path) -> None:
    (project / "vps.env").write_text((project / "vps.env.example").read_text())
    with pytest.raises(ConfigError, match="placeholder"):
        Target.from_settings(load_settings(project))


def test_target_from_generated_vps_env(project: Path) -> None:
    settings = load_settings(project)
    secrets = init_secrets(settings.env_example, settings.env_file)
    target = Target.from_settings(load_settings(project))
    assert target.gateway_url == "http://127.0.0.1:4000"
    assert target.langfuse_url == ""  # no tracing by default: no Langfuse to read from
    assert target.master_key == secrets["LITELLM_MASTER_KEY"]


def test_slice_2_without_a_langfuse_names_the_settings() -> None:
    """The default sends no traces (LANGFUSE_HOST empty): slice 2 fails saying so, not with a URL error."""

    async def chat(request: web.Request) -> web.Response:  # the gateway answers; there is no Langfuse to ask
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": "hi"}}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    with ThreadedServer(app) as gateway:
        checks = get_slice(2).verify(Target(gateway.url, "sk-x", "", "pk", "sk", timeout=5))
    assert [c.ok for c in checks] == [False]
    assert "no Langfuse to read traces from: LANGFUSE_HOST is empty" in checks[0].detail


def test_twelve_slices_listed_with_their_prerequisites() -> None:
    proc = run_ops("slice", "--list", "--json")
    assert proc.returncode == 0, proc.stderr
    slices = json.loads(proc.stdout)["slices"]
    assert [s["slice"] for s in slices] == list(range(1, 13))
    assert {s["slice"]: s["requires"] for s in slices}[2] == [1]


# --- slice ordering and prerequisites: the plan's table, and the engine's refusals along it ---

PLAN_REQUIRES = {1: (), 2: (1,), 3: (2,), 4: (3,), 5: (4,), 6: (5,), 7: (), 8: (7,), 9: (8,), 10: (), 11: (), 12: (5,)}


def test_each_slice_needs_the_plans_earlier_slices() -> None:
    slices = registered()
    assert {number: module.NUMBER for number, module in slices.items()} == {n: n for n in range(1, 13)}
    assert {number: tuple(module.REQUIRES) for number, module in slices.items()} == PLAN_REQUIRES
    # only earlier slices: applying in plan order never waits for a later one
    assert [(n, first) for n, requires in PLAN_REQUIRES.items() for first in requires if not 1 <= first < n] == []


def test_every_service_a_slice_brings_up_is_in_the_compose_file() -> None:
    services = {s.name for s in load_stack(REPO / "docker-compose.vps.yml").services}
    assert {(n, s) for n, m in registered().items() for s in m.SERVICES if s not in services} == set()


def test_applying_in_plan_order_is_never_refused() -> None:
    states: dict[int, Entry] = {}
    for number in sorted(PLAN_REQUIRES):
        assert prerequisite_problem(number, PLAN_REQUIRES[number], states) is None, number
        states[number] = row("apply", "ok", slice=number)


@pytest.mark.parametrize(
    ("number", "done", "missing"),
    [
        (2, (), 1),
        (3, (1,), 2),  # a prerequisite's prerequisite is not enough
        (6, (1, 2, 3, 4), 5),
        (8, (1, 2, 3, 4, 5, 6), 7),  # the events slices hang off slice 7, not off the gateway's
        (9, (7,), 8),
        (12, (1, 2, 3, 4), 5),
    ],
)
def test_a_slice_is_refused_naming_the_prerequisite_not_yet_verified(number: int, done: tuple[int, ...], missing: int) -> None:
    states = {n: row("apply", "ok", slice=n) for n in done}
    assert prerequisite_problem(number, PLAN_REQUIRES[number], states) == (
        f"slice {number} needs slice {missing} applied and verified first (make slice-{missing})"
    )


@pytest.mark.parametrize("number", [1, 7, 10, 11])
def test_slices_without_prerequisites_start_on_a_fresh_journal(number: int) -> None:
    assert prerequisite_problem(number, PLAN_REQUIRES[number], {}) is None


@pytest.mark.parametrize(
    ("factor", "seconds", "ok", "detail"),
    [
        (1.0, 2.9, True, "2.90 s (limit 3 s)"),
        (1.0, 3.2, False, "3.20 s (limit 3 s)"),
        (20.0, 3.2, True, "3.20 s (limit 3 s x20 = 60 s)"),
        (20.0, 61.0, False, "61.00 s (limit 3 s x20 = 60 s)"),
    ],
)
def test_the_plans_time_limits_scale_only_by_the_set_factor(factor: float, seconds: float, ok: bool, detail: str) -> None:
    target = Target("http://127.0.0.1:9", "sk-x", "", "pk", "sk", time_factor=factor)
    check = target.in_time("answers within 3 s", seconds, 3.0)
    assert (check.ok, check.detail) == (ok, detail)


@pytest.mark.parametrize(("value", "factor"), [("", 1.0), ("1", 1.0), ("12.5", 12.5)])
def test_the_time_factor_comes_from_vps_env(project: Path, value: str, factor: float) -> None:
    settings = load_settings(project)
    init_secrets(settings.env_example, settings.env_file)
    with settings.env_file.open("a") as env:
        env.write(f"OPS_VERIFY_TIME_FACTOR={value}\n")
    assert Target.from_settings(load_settings(project)).time_factor == factor


@pytest.mark.parametrize("value", ["0.5", "0", "fast", "nan", "inf", "-3"])
def test_a_time_factor_that_would_loosen_nothing_sensible_is_refused(project: Path, value: str) -> None:
    settings = load_settings(project)
    init_secrets(settings.env_example, settings.env_file)
    with settings.env_file.open("a") as env:
        env.write(f"OPS_VERIFY_TIME_FACTOR={value}\n")
    with pytest.raises(ConfigError, match=rf"OPS_VERIFY_TIME_FACTOR must be a number of at least 1, got '{value}'"):
        Target.from_settings(load_settings(project))
