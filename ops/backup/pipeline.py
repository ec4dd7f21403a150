"""Byte streams through chained processes, with every stage's exit status checked.

A backup is ``producer | zstd | age`` read by Python (hashed and uploaded as
it arrives); a restore is ``download | age -d | zstd -d | consumer``. Nothing
is staged on disk. The producer is a command or a Python iterator of bytes
(fed from a thread). A stage that fails, is killed, or a producer that
raises makes the whole pipeline fail with that stage named: a dump that dies
mid-stream never looks like a finished one. With a deadline, a pipeline
still running at that time has every stage killed, with the stage's own
children, and fails with DeadlineExceeded. Stages stay in ops's process
group, so a signal to the group (the crontab's `timeout`, Ctrl-C) reaches them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO

from ops.errors import OpsError
from ops.interrupts import in_shield

CHUNK = 1 << 20


class PipelineError(OpsError):
    """A stage of a pipeline failed; the message names it and quotes its stderr."""


class DeadlineExceeded(PipelineError):
    """The pipeline was still running at its deadline; every stage was killed."""


@dataclass(frozen=True)
class Command:
    """A program in a pipeline: argv and extra environment."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        # `docker compose exec -T postgres pg_dump ...` is named by the program it runs
        for word in self.argv:
            if word in PROGRAM_NAMES:
                return word
        return os.path.basename(self.argv[0])


PROGRAM_NAMES = {"pg_dump", "pg_dumpall", "pg_restore", "psql", "tar", "git", "zstd", "age"}


@dataclass
class StreamResult:
    size: int = 0
    sha256: str = ""
    seconds: float = 0.0
    stages: list[str] = field(default_factory=list)


Producer = Command | Callable[[], Iterable[bytes]]


def _stderr_tail(handle: IO[bytes]) -> str:
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - 2000))
    return handle.read().decode(errors="replace").strip()


def _describe(returncode: int) -> str:
    return f"was killed by signal {-returncode}" if returncode < 0 else f"exited with status {returncode}"


def stream(
    producer: Producer,
    stages: Sequence[Command],
    sink: Callable[[bytes], None] | None = None,
    deadline: float | None = None,
) -> StreamResult:
    """Given a producer and filter stages, push the bytes through them into sink.

    Return the size, sha256 and wall time of what reached the sink (the
    last stage's output). Raise PipelineError naming the first stage that
    failed (non-zero exit, killed, or a producer/sink exception), after
    stopping every other stage. Raise DeadlineExceeded if it still runs at
    deadline (a time.monotonic() value), after killing every stage.
    """
    commands = ([producer] if isinstance(producer, Command) else []) + list(stages)
    if not commands:
        raise PipelineError("a pipeline needs at least one command")
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded("the deadline had passed before it started")
    started = time.monotonic()
    finished = threading.Event()
    expired = threading.Event()
    procs: list[subprocess.Popen[bytes]] = []
    errs: list[IO[bytes]] = []
    feeder_error: list[BaseException] = []
    feeder: threading.Thread | None = None
    with contextlib.ExitStack() as temporaries:
        temporaries.callback(_stop, procs)
        temporaries.callback(finished.set)
        previous: IO[bytes] | None = None
        for command in commands:
            err: IO[bytes] = temporaries.enter_context(tempfile.TemporaryFile())
            errs.append(err)
            stdin: IO[bytes] | int = previous if previous is not None else subprocess.PIPE
            if previous is None and isinstance(producer, Command):
                stdin = subprocess.DEVNULL
            try:
                proc = subprocess.Popen(
                    list(command.argv),
                    stdin=stdin,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    env={**os.environ, **dict(command.env)} if command.env else None,
                    start_new_session=in_shield(),  # a rollback's restore finishes through a Ctrl-C
                )
            except OSError as exc:
                raise PipelineError(f"cannot start {command.name}: {exc}") from exc
            if previous is not None:
                previous.close()  # the child holds it now; our copy would keep the pipe open
            procs.append(proc)
            previous = proc.stdout
        if not isinstance(producer, Command):
            feeder = threading.Thread(target=_feed, args=(producer, procs[0], feeder_error), daemon=True)
            feeder.start()
        if deadline is not None:
            watchdog = threading.Thread(target=_watch, args=(deadline, finished, expired, procs), daemon=True)
            watchdog.start()
        digest = hashlib.sha256()
        size = 0
        assert previous is not None
        sink_error: BaseException | None = None
        while chunk := previous.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if sink is not None and sink_error is None:
                try:
                    sink(chunk)
                except Exception as exc:  # an upload that failed: stop the producers
                    sink_error = exc
                    break
        if expired.is_set():
            raise DeadlineExceeded(f"still running at the deadline: killed {', '.join(c.name for c in commands)}")
        if sink_error is not None:
            raise PipelineError(f"writing the stream failed: {sink_error}") from sink_error
        for proc in procs:
            proc.wait()
        if feeder is not None:
            feeder.join(None if deadline is None else max(1.0, deadline - time.monotonic()))
        if expired.is_set():  # a stage or the producer held on until the deadline
            raise DeadlineExceeded(f"still running at the deadline: killed {', '.join(c.name for c in commands)}")
        if feeder_error:  # checked first: the stage it killed is not the cause
            raise PipelineError(f"reading the input failed: {feeder_error[0]}") from feeder_error[0]
        failed = [(c, p, e) for c, p, e in zip(commands, procs, errs, strict=True) if p.returncode != 0]
        # a stage killed by SIGPIPE only lost its reader: a later stage that failed (pg_restore) is the cause
        for command, proc, err in sorted(failed, key=lambda f: f[1].returncode == -signal.SIGPIPE)[:1]:
            raise PipelineError(f"{command.name} {_describe(proc.returncode)}: {_stderr_tail(err)[-600:]}")
        return StreamResult(size, digest.hexdigest(), time.monotonic() - started, [c.name for c in commands])


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Kill what still runs (after a failure) and close our pipe ends."""
    for proc in procs:
        if proc.poll() is None:
            _kill_tree(proc)
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _descendants(pid: int) -> list[int]:
    """Return the pids of pid's children, their children and so on (Linux /proc; none elsewhere)."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as stat:
                        ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """Kill a stage and every process it started (a wrapper's child may hold the pipe open)."""
    if proc.returncode is not None:
        return
    family = _descendants(proc.pid)  # before the kill: orphans would be re-parented away from it
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    for pid in family:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _watch(deadline: float, finished: threading.Event, expired: threading.Event, procs: list[subprocess.Popen[bytes]]) -> None:
    """At deadline, unless the pipeline finished, kill every stage with its children."""
    if finished.wait(max(0.0, deadline - time.monotonic())):
        return
    expired.set()
    for proc in list(procs):
        _kill_tree(proc)


def _feed(producer: Callable[[], Iterable[bytes]], first: subprocess.Popen[bytes], errors: list[BaseException]) -> None:
    assert first.stdin is not None
    try:
        for chunk in producer():
            first.stdin.write(chunk)
    except BrokenPipeError:
        pass  # the stage stopped reading; its exit status tells why
    except Exception as exc:
        errors.append(exc)
        first.kill()  # a failed input must not end as a clean EOF
    finally:
        with contextlib.suppress(BrokenPipeError):
            first.stdin.close()
