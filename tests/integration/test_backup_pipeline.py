"""The streaming pipeline: bytes arrive intact, and any failed stage fails the whole stream."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.backup.pipeline import Command, DeadlineExceeded, PipelineError, stream
from ops.local.processes import wait_until
from tests.conftest import REPO

pytestmark = pytest.mark.integration
DATA = bytes(range(256)) * 40_000  # ~10 MB


def test_bytes_pass_through_every_stage_unchanged() -> None:
    received = bytearray()
    result = stream(lambda: iter([DATA[:5], DATA[5:]]), [Command(("cat",)), Command(("cat",))], received.extend)
    assert bytes(received) == DATA
    assert result.size == len(DATA) and result.sha256 == hashlib.sha256(DATA).hexdigest()


def test_a_failing_middle_stage_is_named() -> None:
    with pytest.raises(PipelineError, match=r"sh exited with status 3: broken"):
        stream(Command(("printf", "abc")), [Command(("sh", "-c", "cat >/dev/null; echo broken >&2; exit 3")), Command(("cat",))])


def test_a_producer_killed_mid_stream_fails_even_though_the_rest_saw_a_clean_eof() -> None:
    producer = Command(("sh", "-c", "head -c 100000 /dev/zero; kill -9 $$"))
    with pytest.raises(PipelineError, match="killed by signal 9"):
        stream(producer, [Command(("gzip", "-c"))])


def test_a_python_producer_that_raises_is_the_reported_cause() -> None:
    def produce() -> Iterator[bytes]:
        yield b"x" * 1000
        raise ValueError("download cut off")

    with pytest.raises(PipelineError, match="reading the input failed: download cut off"):
        stream(produce, [Command(("cat",))])


def test_a_failing_sink_stops_the_stages() -> None:
    def sink(chunk: bytes) -> None:
        raise OSError("upload refused")

    with pytest.raises(PipelineError, match="writing the stream failed: upload refused"):
        stream(Command(("cat", "/dev/zero")), [Command(("cat",))], sink)


def test_a_missing_program_is_named() -> None:
    with pytest.raises(PipelineError, match="cannot start no-such-program"):
        stream(Command(("no-such-program",)), [])


def running(pid: int) -> bool:
    """Return whether pid is a live process (a zombie waiting for its parent is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_a_hanging_producer_is_killed_at_the_deadline_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "sleeper.pid"
    # a producer that sends a little, then waits on a child that sleeps (and holds the pipe open)
    producer = Command(("sh", "-c", f"printf abc; sleep 600 & echo $! > {pidfile}; wait"))

    with pytest.raises(DeadlineExceeded, match="still running at the deadline: killed sh, cat"):
        stream(producer, [Command(("cat",))], deadline=time.monotonic() + 1)

    sleeper = int(pidfile.read_text())
    # SIGKILL is delivered at once; reaping may take a moment
    wait_until(lambda: not running(sleeper), 5, f"the end of the producer's child (pid {sleeper})")


def test_a_python_producer_stuck_on_its_input_is_stopped_at_the_deadline() -> None:
    release = threading.Event()

    def produce() -> Iterator[bytes]:
        yield b"x" * 1000
        release.wait()  # a download that stopped answering

    try:
        with pytest.raises(DeadlineExceeded, match="killed cat"):
            stream(produce, [Command(("cat",))], deadline=time.monotonic() + 1)
    finally:
        release.set()


def test_a_pipeline_that_ends_before_its_deadline_is_untouched() -> None:
    result = stream(Command(("printf", "abc")), [Command(("cat",))], deadline=time.monotonic() + 600)
    assert result.size == 3


ROLLBACK_STEP = """
import sys
from ops.backup.pipeline import Command, stream
from ops.interrupts import Interrupted, shielded, signals_as_exceptions

out = bytearray()
try:
    with signals_as_exceptions(), shielded():  # a rollback's restore
        print("started", flush=True)
        stream(Command(("sh", "-c", "sleep 1; printf restored")), [], out.extend)
except Interrupted as exc:
    print(f"{out.decode()} then {exc}", flush=True)
    sys.exit(exc.exit_code)
"""


def test_a_ctrl_c_at_the_terminal_does_not_kill_a_shielded_step_halfway() -> None:
    # a terminal's Ctrl-C goes to the whole foreground process group, children too: a rollback's
    # pg_restore killed after its DROP DATABASE would leave the data neither new nor restored
    proc = subprocess.Popen(
        [sys.executable, "-c", ROLLBACK_STEP], stdout=subprocess.PIPE, text=True, start_new_session=True, cwd=REPO
    )
    assert proc.stdout is not None and proc.stdout.readline() == "started\n"
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # the group, as the terminal sends it
    out, _ = proc.communicate(timeout=30)
    assert out.strip() == "restored then interrupted by SIGINT" and proc.returncode == 128 + signal.SIGINT
