"""OpenCode, the real coding client, through the gateway with the shipped client config.

OpenCode streams (`"stream": true`), so this also proves the gateway and the
provider formats stream end to end. Its provider package is installed from
the npm registry on first use.
"""

from __future__ import annotations

import json
import os
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
    proc = run_opencode(gateway, home, "aistack/cheap", "Fix typo: teh", key="sk-wrong-key")
    assert "[mock " not in proc.stdout
    assert control.calls() == []
