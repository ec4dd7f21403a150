"""OpenCode, the real coding client, through the gateway with the shipped client config.

OpenCode streams (`"stream": true`), so this also proves the gateway and the
provider formats stream end to end. Its provider package is installed from
the npm registry on first use.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops import tools
from ops.local.processes import LiteLLMServer, MockProviderServer
from tests.conftest import REPO, require
from tests.fakes.llm import MockControl

pytestmark = pytest.mark.integration

OPENCODE = REPO / "clients" / "opencode" / "node_modules" / ".bin" / "opencode"
CONFIG = REPO / "clients" / "opencode" / "opencode.json"
# LiteLLM's refusal of a key it does not know: 400 "No connected db." without its database (here, and the stack's
# default); with docker-compose.litellm-db.yml it is a 401 naming the key instead.
GATEWAY_KEY_REFUSAL = "No connected db."


@pytest.fixture(scope="module")
def gateway(mock_provider: MockProviderServer) -> Iterator[LiteLLMServer]:
    with LiteLLMServer(REPO / "litellm-config.yaml", mock_provider.provider_env()) as server:
        yield server


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("opencode-home")


def run_in_project(home: Path, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run argv with env in a work tree of its own under home (OpenCode's HOME), capturing its output."""
    require(OPENCODE.exists() and tools.node(), "OpenCode (make clients)")
    workdir = home / "project"
    workdir.mkdir(exist_ok=True)
    return subprocess.run(
        argv, cwd=workdir, env={"HOME": str(home), **env}, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL
    )


def run_opencode(
    gateway: LiteLLMServer, home: Path, model: str, prompt: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{Path(tools.node() or 'node').parent}:{os.environ['PATH']}",
        "OPENCODE_CONFIG": str(CONFIG),
        "AISTACK_GATEWAY_URL": f"{gateway.url}/v1",
        "AISTACK_GATEWAY_KEY": key or gateway.master_key,
    }
    return run_in_project(home, [str(OPENCODE), "run", "--model", model, prompt], env)


def test_config_offers_the_gateway_groups() -> None:
    config = json.loads(CONFIG.read_text())
    provider = config["provider"]["aistack"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert set(provider["models"]) == {"cheap", "smart", "gpt-4", "claude-3", "gemini-2"}
    assert (config["model"], config["small_model"]) == ("aistack/smart", "aistack/cheap")


@pytest.mark.parametrize(
    ("model", "deployment"), [("cheap", "google/gemini-3.1-flash-lite"), ("smart", "anthropic/claude-opus-5")]
)
def test_opencode_answers_through_the_gateway(
    gateway: LiteLLMServer, home: Path, mock_provider: MockProviderServer, model: str, deployment: str
) -> None:
    control = MockControl(mock_provider.url)
    control.reset()
    proc = run_opencode(gateway, home, f"aistack/{model}", "Fix typo: teh")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"[mock openrouter {deployment}]" in proc.stdout
    calls = control.calls("openrouter")
    assert calls and all(c["stream"] for c in calls)
    assert {c["model"] for c in calls} <= {deployment, "google/gemini-3.1-flash-lite"}  # the small model may title the session


def test_opencode_with_a_wrong_key_gets_no_answer(gateway: LiteLLMServer, home: Path, mock_provider: MockProviderServer) -> None:
    control = MockControl(mock_provider.url)
    control.reset()
    log_start = gateway.log.stat().st_size
    proc = run_opencode(gateway, home, "aistack/cheap", "Fix typo: teh", key="sk-wrong-key")
    assert proc.returncode != 0 and "[mock " not in proc.stdout
    # the reason is the gateway's key check, not anything else that can stop OpenCode: the gateway logged its
    # refusal of the key and answered the completion with it, and OpenCode shows that answer
    with gateway.log.open("rb") as log:
        log.seek(log_start)
        logged = log.read().decode(errors="replace")
    assert "user_api_key_auth(): Exception occured - " + GATEWAY_KEY_REFUSAL in logged, logged
    assert '"POST /v1/chat/completions HTTP/1.1" 400' in logged, logged
    assert f"Error: {GATEWAY_KEY_REFUSAL}" in re.sub(r"\x1b\[[0-9;]*m", "", proc.stderr), proc.stderr  # without colours
    assert control.calls() == []
    answered = run_opencode(gateway, home, "aistack/cheap", "Fix typo: teh")  # the same invocation with the right key
    assert answered.returncode == 0 and "[mock openrouter google/gemini-3.1-flash-lite]" in answered.stdout, answered.stderr


# `ops code` (issue 11 item 7): the task routed like `ops route`, the real OpenCode on that model through the gateway.


@pytest.fixture(scope="module")
def code_project(tmp_path_factory: pytest.TempPathFactory, gateway: LiteLLMServer) -> Path:
    """A project whose vps.env points ops at the test gateway with its master key."""
    project = tmp_path_factory.mktemp("code-project")
    for name in ("vps.env.example", "litellm-config.yaml", "routing-rules.yaml", "docker-compose.litellm-db.yml"):
        shutil.copy2(REPO / name, project / name)
    (project / "vps.env").write_text(f"LITELLM_MASTER_KEY={gateway.master_key}\nOPS_GATEWAY_URL={gateway.url}\n")
    return project


def run_ops_code(project: Path, home: Path, tmp: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Run `ops code ARGS` as a user would: OpenCode found on PATH, ops adding Node and the config itself."""
    env = {"PATH": f"{OPENCODE.parent}:{os.environ['PATH']}", "TMPDIR": str(tmp), **extra_env}
    return run_in_project(home, [sys.executable, "-m", "ops.cli", "code", "--project-dir", str(project), *args], env)


@pytest.mark.parametrize(
    ("args", "said", "provider", "deployment"),
    [
        (("Fix the typo: teh",), "model: cheap (Simple fix; rule small-fix)", "openrouter", "google/gemini-3.1-flash-lite"),
        (
            ("Refactor the greeting",),
            "model: smart (Refactoring or review; rule code-review)",
            "openrouter",
            "anthropic/claude-opus-5",
        ),
        (("--model", "gpt-4", "Fix the typo: teh"), "model: gpt-4 (chosen with --model)", "openai", "gpt-5.4-2026-03-05"),
    ],
    ids=["fix-cheap", "refactor-smart", "override-gpt-4"],
)
def test_ops_code_runs_opencode_on_the_routed_model(
    code_project: Path,
    gateway: LiteLLMServer,
    home: Path,
    tmp_path: Path,
    mock_provider: MockProviderServer,
    args: tuple[str, ...],
    said: str,
    provider: str,
    deployment: str,
) -> None:
    control = MockControl(mock_provider.url)
    control.reset()
    proc = run_ops_code(code_project, home, tmp_path, "--run", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0] == said
    assert f"[mock {provider} {deployment}]" in proc.stdout  # OpenCode's answer, from that deployment
    assert {(c["provider"], c["model"]) for c in control.calls()} == {(provider, deployment)}  # and no other model asked
    assert gateway.master_key not in proc.stdout + proc.stderr
    assert list(tmp_path.glob("ops-code-*")) == [] and list((home / "project").iterdir()) == []  # no config left anywhere


def test_ops_code_with_the_database_override_names_a_gateway_without_one(
    code_project: Path, home: Path, tmp_path: Path, mock_provider: MockProviderServer
) -> None:
    # vps.env says LiteLLM has its database, the gateway has none: OpenCode's key cannot exist, and ops says so
    control = MockControl(mock_provider.url)
    control.reset()
    proc = run_ops_code(
        code_project, home, tmp_path, "--run", "Fix the typo: teh", OPS_COMPOSE_OVERRIDES="docker-compose.litellm-db.yml"
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = proc.stderr.strip().splitlines()
    assert len(error) == 1 and "/key/info" in error[0] and "answered 500: Database not connected" in error[0], proc.stderr
    assert control.calls() == [] and "[mock " not in proc.stdout
