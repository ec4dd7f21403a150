"""Local mode as a newcomer runs it: `ops demo`, real LiteLLM with the project's config and the mock provider."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ops import tools
from ops.gateway.litellm_config import model_groups
from tests.conftest import REPO, require

pytestmark = pytest.mark.integration

EXPECTED = {
    "gpt-4": "openai gpt-5.4-2026-03-05",
    "claude-3": "anthropic claude-sonnet-5",
    "gemini-2": "gemini gemini-3.1-flash-lite",
    "cheap": "openrouter google/gemini-3.1-flash-lite",
    "smart": "openrouter anthropic/claude-opus-5",
}


def _ports(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", output)]


def _closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(autouse=True)
def _tools() -> None:
    require(tools.postgres_bin("initdb"), f"PostgreSQL {tools.POSTGRES_MAJOR}")
    require(tools.redis_server(), "redis-server")


def test_demo_routes_each_model_group_to_its_provider() -> None:
    assert set(model_groups(REPO / "litellm-config.yaml")) == set(EXPECTED)
    proc = subprocess.run(
        [sys.executable, "-m", "ops.cli", "demo", "--project-dir", str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for group, deployment in EXPECTED.items():
        assert re.search(
            rf"^{re.escape(group)}\s+200\s+-> {re.escape(deployment)} at http://127\.0\.0\.1:\d+", proc.stdout, re.M
        ), proc.stdout
        assert f"You said: Hello {group}, what are you?" in proc.stdout
    # the local stack's backup loop: every database (4) and the roles to the bucket, restored, compared
    drill = r"^  backup \S+-manual: 5 objects, \d+ bytes; drill OK: 4 databases restored, (\d+)/\1 tables identical$"
    assert re.search(drill, proc.stdout, re.M), proc.stdout
    assert all(_closed(port) for port in _ports(proc.stdout)), "a service the demo started is still listening"


def start_demo(env: dict[str, str] | None = None, new_session: bool = False) -> subprocess.Popen[str]:
    """`ops demo --keep-running` in the background, its output on a pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "demo", "--keep-running", "--project-dir", str(REPO)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=new_session,
    )


def test_ctrl_c_stops_everything_the_demo_started() -> None:
    proc = start_demo()
    assert proc.stdout is not None
    output = ""
    deadline = time.monotonic() + 300
    while "press Ctrl-C" not in output and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        output += line
    assert "press Ctrl-C" in output, output
    ports = _ports(output)
    assert len(ports) >= 4 and not any(_closed(p) for p in ports)
    proc.send_signal(signal.SIGINT)
    try:
        # each service gets a bounded stop (SIGTERM, then SIGKILL): on a loaded machine that adds up
        rest, _ = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
        where = subprocess.run([spy, "dump", "--pid", str(proc.pid)], capture_output=True, text=True).stdout if spy else ""
        proc.kill()
        pytest.fail(f"the demo did not stop within 150 s of Ctrl-C; it was at:\n{where}")
    assert proc.returncode == 0, output + rest
    assert "stopping" in rest
    assert all(_closed(port) for port in ports)
