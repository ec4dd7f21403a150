"""What the stack uses while a scenario runs: peak memory, CPU and restarts of each container or process.

``DockerWatch`` reads the compose project's containers through the Docker API (the numbers `docker stats`
shows: memory without the page cache, against the container's limit; CPU time from the cgroup) and their
RestartCount and OOMKilled from `docker inspect`. ``ProcessWatch`` does the same for local processes
(the test harness, `ops loadtest --local`): PSS of each process tree, CPU time from /proc. Both sample
in a thread every ``interval`` seconds while the context is open.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from ops.bench.load import tree_rss_mb
from ops.errors import ServiceError
from ops.loadtest.report import Usage
from ops.runtime.compose import Compose


class Watch(Protocol):
    """A context manager that samples while open; usages() and stack_peak_mb are read after it closes."""

    stack_peak_mb: float

    def __enter__(self) -> Self: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None: ...

    def usages(self) -> list[Usage]: ...


@dataclass
class _Track:
    """The samples of one watched unit."""

    limit_mb: float | None
    peak_mb: float = 0.0
    peak_cpu: float = 0.0
    first_cpu: float | None = None  # CPU seconds at the first sample
    last_cpu: float | None = None
    first_at: float = 0.0
    last_at: float = 0.0
    restarts: int = 0
    problem: str = ""

    def sample(self, memory_mb: float, cpu_seconds: float, at: float) -> None:
        self.peak_mb = max(self.peak_mb, memory_mb)
        if self.last_cpu is not None and at > self.last_at:
            self.peak_cpu = max(self.peak_cpu, (cpu_seconds - self.last_cpu) / (at - self.last_at) * 100)
        if self.first_cpu is None:
            self.first_cpu, self.first_at = cpu_seconds, at
        self.last_cpu, self.last_at = cpu_seconds, at

    def usage(self, name: str) -> Usage:
        cpu = (self.last_cpu or 0.0) - (self.first_cpu or 0.0)
        span = self.last_at - self.first_at
        mean = cpu / span * 100 if span > 0 else 0.0
        return Usage(name, self.peak_mb, self.limit_mb, self.peak_cpu, mean, cpu, self.restarts, self.problem)


class _Sampler:
    """The sampling thread and the stack's peak shared by both watches."""

    interval = 1.0

    def __init__(self) -> None:
        self.tracks: dict[str, _Track] = {}
        self.stack_peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.error: Exception | None = None

    def _sample_all(self) -> None:
        raise NotImplementedError

    def _loop(self) -> None:
        while True:
            try:
                self._sample_all()
            except Exception as exc:  # a failed sample is reported once the scenario ends, not lost in the thread
                self.error = exc
                return
            if self._stop.wait(self.interval):
                return

    def _start(self) -> None:
        self._thread.start()

    def _finish(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is None:
            self._sample_all()  # the last window, so a short scenario still has two samples

    def usages(self) -> list[Usage]:
        """Each watched unit's usage. Raise ServiceError if sampling failed."""
        if self.error is not None:
            raise ServiceError(f"watching the stack failed: {self.error}")
        return [track.usage(name) for name, track in sorted(self.tracks.items())]


def _tree(pid: int) -> list[int]:
    pids, pending = [], [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


def tree_cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds of pid and its descendants (0 for processes that have exited)."""
    ticks = 0
    for current in _tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return ticks / os.sysconf("SC_CLK_TCK")


class ProcessWatch(_Sampler):
    """Watch local process trees by name: PSS, CPU, and whether each is still alive at the end."""

    def __init__(self, pids: dict[str, int], limits_mb: dict[str, float | None] | None = None, interval: float = 0.5) -> None:
        super().__init__()
        self.pids, self.interval = pids, interval
        self.tracks = {name: _Track((limits_mb or {}).get(name)) for name in pids}

    def _sample_all(self) -> None:
        total = 0.0
        for name, pid in self.pids.items():
            memory = tree_rss_mb(pid)
            total += memory
            self.tracks[name].sample(memory, tree_cpu_seconds(pid), time.monotonic())
        self.stack_peak_mb = max(self.stack_peak_mb, total)

    def __enter__(self) -> Self:
        self._start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._finish()
        for name, pid in self.pids.items():
            if not Path(f"/proc/{pid}").exists():
                self.tracks[name].restarts, self.tracks[name].problem = 1, "exited"


def _docker_memory_mb(stats: dict[str, Any]) -> float:
    """Memory as `docker stats` shows it: usage less the inactive page cache (cgroup v2 inactive_file, v1 total_)."""
    memory = stats.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return float(max(0, memory.get("usage", 0) - cache)) / 2**20


@dataclass
class _Container:
    container: Any  # docker.models.containers.Container
    restarts_before: int
    oom_before: bool
    memory_mb: float = 0.0


class DockerWatch(_Sampler):
    """Watch every running container of a compose project through the Docker API (local or DOCKER_HOST=ssh://).

    Each container's stats stream (one frame a second, what `docker stats` reads) is followed in a thread of
    its own: a one-shot stats request costs the engine most of a second per container.
    """

    def __init__(self, compose: Compose) -> None:
        super().__init__()
        self.compose = compose
        self.containers: dict[str, _Container] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _follow(self, name: str, watched: _Container) -> None:
        from docker.errors import DockerException

        try:
            for stats in watched.container.stats(stream=True, decode=True):
                self._record(name, watched, stats)
                if self._stop.is_set():
                    return
        except DockerException:  # stopped or removed mid-run: reported when the scenario ends
            return
        except Exception as exc:  # anything else is reported once the scenario ends, not lost in the thread
            self.error = exc

    def _record(self, name: str, watched: _Container, stats: dict[str, Any]) -> None:
        cpu_ns = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage", 0)
        with self._lock:
            watched.memory_mb = _docker_memory_mb(stats)
            self.tracks[name].sample(watched.memory_mb, cpu_ns / 1e9, time.monotonic())
            self.stack_peak_mb = max(self.stack_peak_mb, sum(c.memory_mb for c in self.containers.values()))

    def _start(self) -> None:
        for name, watched in self.containers.items():
            thread = threading.Thread(target=self._follow, args=(name, watched), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _finish(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)  # each returns at its next frame (a second)

    def __enter__(self) -> Self:
        from ops.runtime.docker import client

        docker = client(self.compose.docker_host)
        running = {s: c for s, c in self.compose.ps().items() if c.running and c.container_id}
        if not running:
            raise ServiceError("no container of the compose project is running: start the stack first (docker compose up)")
        for service, state in running.items():
            container = docker.containers.get(state.container_id)
            limit = (container.attrs.get("HostConfig") or {}).get("Memory") or 0
            before = container.attrs.get("State") or {}
            restarts = container.attrs.get("RestartCount", 0)
            self.containers[service] = _Container(container, restarts, bool(before.get("OOMKilled")))
            self.tracks[service] = _Track(limit / 2**20 if limit else None)
        self._start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._finish()
        from docker.errors import NotFound

        for name, watched in self.containers.items():
            track = self.tracks[name]
            try:
                watched.container.reload()
            except NotFound:
                track.restarts, track.problem = 1, "container gone"
                continue
            attrs = watched.container.attrs
            state = attrs.get("State") or {}
            track.restarts = attrs.get("RestartCount", 0) - watched.restarts_before
            oom = "OOM-killed" if state.get("OOMKilled") and not watched.oom_before else ""
            track.problem = ", ".join(p for p in (oom, state.get("Status", "running")) if p and p != "running")
