"""`ops code`'s decisions: which model and why, --model, OpenCode's config, and which gateway key.

The key path with LiteLLM's database on runs against a contract fake of its key endpoints
(tests/fakes/litellm_keys.py): the database cannot run here. OpenCode itself runs in
tests/integration/test_opencode.py.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
from pathlib import Path

import httpx
import pytest

from ops.code import (
    KEY_ALIAS,
    CodeError,
    choose_model,
    daily_budget_usd,
    gateway_of,
    opencode_argv,
    opencode_config,
    opencode_key,
    opencode_key_value,
    plan_code,
    private_config,
)
from ops.config import load_settings
from ops.errors import ConfigError, ServiceError
from ops.gateway.routing import Route, route_task
from tests.conftest import REPO
from tests.fakes.litellm_keys import FakeLiteLLMKeys, token_of
from tests.unit.cli import run_ops

MASTER = "sk-master-0123456789abcdef"
GROUPS = ["gpt-4", "claude-3", "gemini-2", "cheap", "smart"]


def make_project(project: Path, *lines: str) -> Path:
    for name in ("routing-rules.yaml", "docker-compose.litellm-db.yml"):
        shutil.copy2(REPO / name, project / name)
    (project / "vps.env").write_text(
        "\n".join([f"LITELLM_MASTER_KEY={MASTER}", "OPS_GATEWAY_URL=http://gateway.test:4000", *lines]) + "\n"
    )
    return project


@pytest.fixture
def code_project(project: Path) -> Path:
    return make_project(project)


@pytest.fixture
def db_project(project: Path) -> Path:
    return make_project(project, "OPS_COMPOSE_OVERRIDES=docker-compose.litellm-db.yml")


# (task, group, rule): the routing notes' cheap/smart, and the rest as `ops route` says
CASES = [
    ("Fix the typo in README.md", "cheap", "small-fix"),
    ("fix the failing unit test", "cheap", "small-fix"),
    ("typo: teh -> the in docs/GATEWAY.md", "cheap", "small-fix"),
    ("Refactor ops/cli.py into smaller commands", "smart", "code-review"),
    ("Review my last commit", "smart", "code-review"),
    ("review and fix the typo", "smart", "code-review"),  # the stronger model wins a tie
    ("Explain how the backup pipeline works", "gpt-4", "reasoning"),
    ("quick fix of a complex race", "gpt-4", "reasoning"),
    ("Add a --json flag to ops status", "gemini-2", "default"),
    ("add a prefix to the log lines", "gemini-2", "default"),  # "prefix" is not "fix"
    ("fix this file: " + "x" * 60_000, "claude-3", "long-context"),
]


@pytest.mark.parametrize(("task", "group", "rule"), CASES, ids=[c[0][:30] for c in CASES])
def test_a_task_gets_the_group_ops_route_gives_it(code_project: Path, task: str, group: str, rule: str) -> None:
    settings = load_settings(code_project)
    chosen = choose_model(settings, task)
    assert (chosen.model, chosen.rule) == (group, rule)
    assert chosen == route_task(settings, task)


def test_model_overrides_the_route(code_project: Path) -> None:
    assert choose_model(load_settings(code_project), "Fix the typo", "smart") == Route("smart", "chosen with --model", "--model")


def test_an_unknown_group_is_refused_naming_the_known_ones(code_project: Path) -> None:
    with pytest.raises(
        CodeError,
        match=r"--model 'gpt-5' is not a model group of litellm-config.yaml; known: gpt-4, claude-3, gemini-2, cheap, smart",
    ):
        choose_model(load_settings(code_project), "Fix the typo", "gpt-5")


def test_an_empty_task_is_refused(code_project: Path) -> None:
    with pytest.raises(CodeError, match="the task is empty"):
        choose_model(load_settings(code_project), "  \n")


def test_dry_run_prints_the_model_why_and_the_command_but_not_the_key(code_project: Path) -> None:
    proc = run_ops("code", "--project-dir", str(code_project), "--dry-run", "Fix the typo in README.md")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "model: cheap (Simple fix; rule small-fix)"
    assert lines[1].startswith("gateway: http://gateway.test:4000/v1, key: the master key: LiteLLM's database is off")
    assert "--model aistack/cheap" in lines[2] and "'--prompt=Fix the typo in README.md'" in lines[2]
    assert '"baseURL": "http://gateway.test:4000/v1"' in proc.stdout
    assert MASTER not in proc.stdout + proc.stderr


def test_cli_override_and_unknown_group(code_project: Path) -> None:
    proc = run_ops("code", "--project-dir", str(code_project), "--dry-run", "--model", "smart", "Fix the typo")
    assert proc.returncode == 0 and proc.stdout.splitlines()[0] == "model: smart (chosen with --model)", proc.stderr
    proc = run_ops("code", "--project-dir", str(code_project), "--dry-run", "--model", "gpt-5", "Fix the typo")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (
        "error: --model 'gpt-5' is not a model group of litellm-config.yaml; known: gpt-4, claude-3, gemini-2, cheap, smart"
    )


def test_the_config_offers_only_the_gateway_and_holds_no_key(code_project: Path) -> None:
    settings = load_settings(code_project)
    config = opencode_config(GROUPS, gateway_of(settings), "cheap")
    provider = config["provider"]["aistack"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"] == {"baseURL": "http://gateway.test:4000/v1", "apiKey": "{file:%s}"}
    assert list(provider["models"]) == GROUPS
    assert config["enabled_providers"] == ["aistack"]
    assert (config["model"], config["small_model"]) == ("aistack/cheap", "aistack/cheap")
    assert MASTER not in json.dumps(config)


def test_the_config_file_is_private_and_removed(code_project: Path) -> None:
    config = opencode_config(GROUPS, gateway_of(load_settings(code_project)), "cheap")
    with private_config(config, MASTER) as path:
        key_file = path.parent / "gateway.key"
        for private in (path, key_file):
            assert stat.S_IMODE(private.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        written = json.loads(path.read_text())
        # the key is read from its own file (not OpenCode's environment, which its shell tool hands on)
        assert written["provider"]["aistack"]["options"]["apiKey"] == f"{{file:{key_file}}}"
        assert key_file.read_text() == MASTER and MASTER not in path.read_text()
    assert not path.parent.exists()


def test_a_task_that_looks_like_an_option_stays_the_message() -> None:
    argv = opencode_argv(Path("/bin/opencode"), "cheap", "--help me fix this", once=True)
    assert argv[:4] == ["/bin/opencode", "run", "--model", "aistack/cheap"] and argv[-2:] == ["--", "--help me fix this"]
    assert opencode_argv(Path("/bin/opencode"), "smart", "-x", once=False)[-1] == "--prompt=-x"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (None, "vps.env not found"),
        ("LITELLM_MASTER_KEY=\n", "LITELLM_MASTER_KEY in .* is empty or does not start with sk-"),
        (f"LITELLM_MASTER_KEY={MASTER}\nOPS_GATEWAY_URL=gateway:4000\n", "OPS_GATEWAY_URL must start with http:// or https://"),
    ],
)
def test_a_gateway_ops_cannot_use_is_named(project: Path, env: str | None, message: str) -> None:
    if env is not None:
        (project / "vps.env").write_text(env)
    with pytest.raises(ConfigError, match=message):
        gateway_of(load_settings(project))


def test_the_daily_budget_is_the_routing_notes_5_dollars() -> None:
    assert daily_budget_usd(load_settings(REPO)) == pytest.approx(5.0)


def client_for(fake: FakeLiteLLMKeys) -> httpx.Client:
    return httpx.Client(transport=fake.transport())


def test_without_litellm_s_database_opencode_uses_the_master_key_and_asks_nothing(code_project: Path) -> None:
    settings = load_settings(code_project)
    fake = FakeLiteLLMKeys(MASTER)
    key = opencode_key(settings, gateway_of(settings), client_for(fake))
    assert (key.kind, key.value) == ("master", MASTER)
    assert "daily budgets ($5.00 a day in all" in key.note
    assert fake.requests == []


def test_with_the_database_opencode_gets_its_own_key_with_a_daily_budget_once(db_project: Path) -> None:
    settings = load_settings(db_project)
    fake = FakeLiteLLMKeys(MASTER)
    key = opencode_key(settings, gateway_of(settings), client_for(fake))
    derived = opencode_key_value(MASTER)
    assert (key.kind, key.value) == ("virtual", derived) and key.value != MASTER
    assert [(m, p) for m, p, _ in fake.requests] == [("GET", "/key/info"), ("POST", "/key/generate")]
    assert fake.requests[0][2] == {"key": token_of(derived)}  # its hash: the key stays out of the URL and access logs
    assert fake.requests[1][2] == {
        "key": derived,
        "key_alias": KEY_ALIAS,
        "models": GROUPS,
        "max_budget": 5.0,
        "budget_duration": "1d",
        "metadata": {"created_by": "ops code"},
    }
    fake.requests.clear()
    assert opencode_key(settings, gateway_of(settings), client_for(fake)).value == derived  # the next run: found
    assert [(m, p) for m, p, _ in fake.requests] == [("GET", "/key/info")]


def test_a_key_whose_budget_drifted_is_updated(db_project: Path) -> None:
    settings = load_settings(db_project)
    fake = FakeLiteLLMKeys(MASTER)
    opencode_key(settings, gateway_of(settings), client_for(fake))
    fake.rows[token_of(opencode_key_value(MASTER))]["max_budget"] = 50.0  # raised by hand in the UI
    fake.requests.clear()
    opencode_key(settings, gateway_of(settings), client_for(fake))
    assert [(m, p) for m, p, _ in fake.requests] == [("GET", "/key/info"), ("POST", "/key/update")]
    assert fake.rows[token_of(opencode_key_value(MASTER))]["max_budget"] == 5.0


def test_a_dry_run_asks_the_gateway_nothing(db_project: Path) -> None:
    fake = FakeLiteLLMKeys(MASTER)
    plan = plan_code(load_settings(db_project), "Fix the typo", None, once=False, dry_run=True, client=client_for(fake))
    assert plan.key.kind == "virtual" and fake.requests == []


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("custom_keys_disabled", r"/key/generate .* answered 403: \{'error': 'Custom API key values are disabled"),
        (
            "alias_taken",
            r"/key/generate .* answered 400: Key with alias 'opencode' already exists.*; delete that key \(POST /key/delete",
        ),
        ("wrong_master", r"/key/info .* answered 401: Authentication Error"),
    ],
)
def test_a_gateway_refusing_the_key_is_named(db_project: Path, setup: str, message: str) -> None:
    settings = load_settings(db_project)
    fake = FakeLiteLLMKeys(MASTER)
    if setup == "custom_keys_disabled":
        fake.custom_keys_disabled = True
    elif setup == "alias_taken":  # a key made under an earlier master key
        fake.rows[token_of(opencode_key_value("sk-earlier-master-key-0000"))] = {"key_alias": KEY_ALIAS}
    else:
        fake.master_key = "sk-another-master-key-000"
    with pytest.raises(CodeError, match=message):
        opencode_key(settings, gateway_of(settings), client_for(fake))


def test_a_gateway_that_does_not_answer_is_named(db_project: Path) -> None:
    settings = load_settings(db_project)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(
        ServiceError, match=re.escape("the gateway at http://gateway.test:4000 does not answer: connection refused")
    ):
        opencode_key(settings, gateway_of(settings), httpx.Client(transport=httpx.MockTransport(refuse)))


def test_the_derived_key_is_litellm_s_format_and_follows_the_master_key() -> None:
    key = opencode_key_value(MASTER)
    assert key.startswith("sk-") and len(key) >= 16
    assert key == opencode_key_value(MASTER) != opencode_key_value(MASTER + "x")
