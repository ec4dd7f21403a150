"""Slices 4 and 6 on Docker, as `make slice-4` and `make slice-6` run them: `ops slice N --plan`, then `--apply`.

n8n has no image here, and its npm install is 2.8 GB: the stand-in is the Debian python image with the
n8n and the Node 24 that `make clients` cached on the host mounted into it, started with the compose
file's own environment, volume, network and memory limit. Slice 4's apply runs ops.workflows.n8n.ComposeN8n:
`docker compose run --rm --no-deps -T --entrypoint n8n n8n import:...` with the credentials on stdin,
the exports through a temp file in the one-off container, `docker compose restart n8n` and the probe
with the container's Node. The workflow reaches the stand-in LiteLLM at http://litellm:4000, as on the VM;
the verify calls n8n's loopback port (OPS_N8N_URL) and reads traces from the Langfuse fake.

Slice 6: the compose file's observer service (the events profile, as slice 7 turns it on) is the bot, polling
the Telegram Bot API contract fake, a container on the compose network (OPS_TELEGRAM_API), and asking n8n
at http://n8n:5678 (the compose file's OPS_N8N_URL, over vps.env's loopback one).

The prerequisites are verified, not applied: slice 3's verify as it is; slice 5's with the mock provider
refusing LiteLLM's OpenAI key instead of recreating litellm twice with a broken one (that drill on Docker is
tests/stack/test_slices_on_docker.py's).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops import tools
from ops.local.processes import free_port
from ops.slices import engine
from ops.workflows import router
from tests.conftest import REPO, require
from tests.fakes.llm import MockControl
from tests.stack.conftest import StackProject

pytestmark = pytest.mark.stack

TOKEN = "123456:AAHstackFRONTdoor_-x"  # the bot's token: the Telegram fake accepts this one only
CHAT = 1001

OVERRIDE = """# Test-only: n8n from the host's cache (make clients) in the Debian stand-in, its webhooks on loopback;
# the Telegram Bot API's contract fake beside the observer.
services:
  n8n:
    image: {python}
    entrypoint: ["n8n"]
    environment:
      PATH: /opt/node/bin:/opt/n8n/node_modules/.bin:/usr/local/bin:/usr/bin:/bin
      # the image's user folder (its volume): the stand-in runs as root, whose home is elsewhere
      HOME: /home/node
      N8N_USER_FOLDER: /home/node
    volumes:
      - {node_dir}:/opt/node:ro
      - {n8n_dir}:/opt/n8n
    ports:
      - "127.0.0.1:{n8n_port}:5678"
    healthcheck:
      interval: 2s
  telegram-fake:
    image: {python}
    entrypoint: ["python3", "-m", "tests.fakes.telegram", "--port", "8081"]
    working_dir: /src
    environment:
      OPS_TELEGRAM_BOT_TOKEN: ${{OPS_TELEGRAM_BOT_TOKEN}}
    volumes:
      - {repo}/tests:/src/tests:ro
    networks: [edge]
    healthcheck:
      test: ["CMD", "python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 8081), 3)"]
      interval: 2s
      retries: 30
  observer:
    depends_on:
      telegram-fake:
        condition: service_healthy
"""


@pytest.fixture(scope="module")
def n8n_project(module_stack_project: StackProject, images: dict[str, str]) -> Iterator[StackProject]:
    """The module's stack with n8n, LiteLLM and the observer (its bot on the Telegram fake) running."""
    found = tools.n8n_install()
    require(found, f"n8n {tools.N8N_VERSION} in {tools.cache_dir()} (make clients runs scripts/install-n8n.sh)")
    assert found is not None
    node, n8n_dir = found
    project, port = module_stack_project, free_port()
    (project.dir / "routing-rules.yaml").write_text((REPO / "routing-rules.yaml").read_text())
    (project.dir / "workflows").mkdir(exist_ok=True)
    (project.dir / router.WORKFLOW_FILE).write_text((REPO / router.WORKFLOW_FILE).read_text())
    (project.dir / "compose.n8n.yml").write_text(
        OVERRIDE.format(python=images["python"], node_dir=Path(node).parent.parent, n8n_dir=n8n_dir, n8n_port=port, repo=REPO)
    )
    project.overrides = (*project.overrides, "compose.n8n.yml")
    truth = project.dir / "truth"  # the observer's truth repository, as slice 7 finds it
    subprocess.run(["git", "init", "-q", "-b", "main", str(truth)], check=True)
    subprocess.run(["git", "-C", str(truth), "-c", "user.name=h", "-c", "user.email=h@example.com", "commit", "-q",
                    "--allow-empty", "-m", "start"], check=True)  # fmt: skip
    env = project.settings.env_file
    text = env.read_text()
    for key, value in {
        "OPS_COMPOSE_OVERRIDES": "compose.standin.yml,compose.n8n.yml",
        "COMPOSE_PROFILES": "events",  # as slice 7 leaves it: the observer on
        "OPS_N8N_URL": f"http://127.0.0.1:{port}",  # the verify's way in; the observer's is the compose file's
        "OPS_TELEGRAM_BOT_TOKEN": TOKEN,
        "OPS_TELEGRAM_CHAT_IDS": str(CHAT),
        "OPS_TELEGRAM_API": "http://telegram-fake:8081",
    }.items():
        text, replaced = re.subn(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
        assert replaced == 1, key
    env.write_text(text)
    assert project.settings.profiles == ("events",)
    up = project.compose("up", "--detach", "--wait", "--wait-timeout", "240", "litellm", "n8n", "observer", check=False)
    if up.returncode != 0:
        logs = project.compose("logs", "--tail", "40", "n8n", "litellm", "observer", check=False).stdout
        pytest.fail(f"n8n, the gateway and the observer did not come up:\n{up.stderr[-2000:]}\n{logs[-4000:]}")
    yield project


def ops_slice(project: StackProject, *args: str) -> dict[str, Any]:
    """Run `ops slice ARGS --json` as `make slice-N` does (--yes: no terminal here); return its report."""
    argv = [sys.executable, "-m", "ops.cli", "slice", *args, "--project-dir", str(project.dir), "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def failed(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [check for check in report["checks"] if not check["ok"]]


@pytest.fixture(scope="module")
def slice_4_applied(n8n_project: StackProject) -> dict[str, Any]:
    """`make slice-4` on the module's stack, after slice 3's verify (its prerequisite); return the apply's report."""
    verified = engine.run_verify(engine.Runtime.for_settings(n8n_project.settings), 3)
    assert verified.ok, verified.to_dict()
    plan = ops_slice(n8n_project, "4", "--plan")
    assert (plan["databases"], plan["compose_actions"]) == (["n8n"], ["n8n: unchanged"])
    return ops_slice(n8n_project, "4", "--apply", "--yes")


def test_make_slice_4_deploys_verifies_and_a_second_apply_changes_nothing(
    n8n_project: StackProject, slice_4_applied: dict[str, Any]
) -> None:
    applied = slice_4_applied
    assert applied["outcome"] == "ok" and not failed(applied), applied
    assert [c["name"] for c in applied["checks"]] == [
        "routing table",
        "reason in each answer",
        "answers within 3 s",
        "webhook needs its key",
        "trace in Langfuse",
    ]
    # what the deploy changed, through n8n's CLI in one-off containers, ending with the restart that serves it
    assert applied["changed"][-1] == "n8n restarted to serve it", applied["changed"]
    assert "n8n workflow 'LiteLLM router' published" in applied["changed"]

    again = ops_slice(n8n_project, "4", "--apply", "--yes")  # n8n holds it all, published: nothing to do
    assert (again["outcome"], again["changed"], failed(again)) == ("unchanged", [], []), again


@contextlib.contextmanager
def provider_refuses_openai_key(project: StackProject) -> Iterator[None]:
    """Slice 5's drill, cheaply: OpenAI (the mock) refuses the key LiteLLM holds, as it refuses a broken one."""
    mock = MockControl(f"http://127.0.0.1:{project.mock_port}")
    mock.set("openai", reject_keys=["mock-openai-key"])
    try:
        yield
    finally:
        mock.reset()


def test_make_slice_6_verifies_the_bot_in_the_observer_service(
    n8n_project: StackProject, slice_4_applied: dict[str, Any]
) -> None:
    assert slice_4_applied["outcome"] == "ok"  # the webhook the bot asks is deployed
    runtime = engine.Runtime.for_settings(n8n_project.settings)
    drill = dataclasses.replace(runtime.target, break_openai=lambda: provider_refuses_openai_key(n8n_project))
    fallback = engine.run_verify(dataclasses.replace(runtime, target=drill), 5)  # slice 6's prerequisite
    assert fallback.ok, fallback.to_dict()

    assert ops_slice(n8n_project, "6", "--plan")["requires"] == [5]
    applied = ops_slice(n8n_project, "6", "--apply", "--yes")
    assert applied["outcome"] == "unchanged" and not failed(applied), applied  # it adds nothing: it checks
    assert [c["name"] for c in applied["checks"]] == [
        "observer running",
        "the bot answers",
        "round trip under 5 s",
        "traced in Langfuse",
        "no error logged",
    ]
    # the observer's container log (what `docker compose logs` shows the operator) never holds the bot's token
    logs = n8n_project.compose("logs", "--no-color", "observer").stdout
    assert logs and TOKEN.split(":")[1] not in logs
