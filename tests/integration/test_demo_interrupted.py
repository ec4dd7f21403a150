"""`ops demo` interrupted while its services are still starting (issue #14, item 3): real Postgres, Redis,
the mock provider and LiteLLM, stopped by SIGINT or SIGTERM before the prompt."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from ops.local.processes import wait_until
from tests.integration.test_demo import _closed, _ports, _tools, start_demo  # noqa: F401

pytestmark = pytest.mark.integration


def descendants(pid: int) -> set[int]:
    """Return the pids of every live descendant of pid (services run in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_demo_interrupted_while_starting_stops_every_child_and_leaves_no_temp_dir(
    request: pytest.FixtureRequest, signum: signal.Signals
) -> None:
    # the demo's own TMPDIR, outside pytest's 0700 tmp_path: Postgres runs as its own user when ops runs as root
    temp = Path(tempfile.mkdtemp(prefix="aistack-demo-test-"))
    temp.chmod(0o1777)
    request.addfinalizer(lambda: shutil.rmtree(temp, ignore_errors=True))
    proc = start_demo(env={**os.environ, "TMPDIR": str(temp)}, new_session=True)
    assert proc.stdout is not None
    output = ""
    while "starting LiteLLM" not in output:  # Postgres, Redis and the mock provider are up; LiteLLM starting
        line = proc.stdout.readline()
        assert line, output
        output += line
    started: set[int] = set()

    def litellm_spawned() -> bool:
        started.update(descendants(proc.pid))
        return any(b"litellm" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in started if alive(pid))

    wait_until(litellm_spawned, 120, "the demo's services", None)
    assert "press Ctrl-C" not in output
    ports = _ports(output)
    assert len(ports) >= 3 and not any(_closed(p) for p in ports)

    proc.send_signal(signum)
    rest, _ = proc.communicate(timeout=150)

    assert proc.returncode in (130, 128 + signum), output + rest
    assert "Traceback" not in rest, rest
    wait_until(lambda: not any(alive(pid) for pid in started), 30, "the demo's children to exit", None)
    assert all(_closed(port) for port in ports)
    assert list(temp.iterdir()) == [], "the demo left temp dirs behind"
