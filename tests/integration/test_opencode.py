"""OpenCode, the real coding client, through the gateway with the shipped client config.

OpenCode streams (`"stream": true`), so this also proves the gateway and the
provider formats stream end to end. Its provider package is installed from
the npm registry on first use.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
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


def run_opencode(
    gateway: LiteLLMServer, home: Path, model: str, prompt: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    node = tools.node()
    require(OPENCODE.exists() and node, "OpenCode (make clients)")
    assert node is not None
    workdir = home / "project"
    workdir.mkdir(exist_ok=True)
    env = {
        "PATH": f"{Path(node).parent}:{os.environ['PATH']}",
        "HOME": str(home),
        "OPENCODE_CONFIG": str(CONFIG),
        "AISTACK_GATEWAY_URL": f"{gateway.url}/v1",
        "AISTACK_GATEWAY_KEY": key or gateway.master_key,
    }
    return subprocess.run(
        [str(OPENCODE), "run", "--model", model, prompt],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )


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
