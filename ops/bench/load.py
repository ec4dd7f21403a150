"""Closed-loop HTTP load and process memory sampling, shared by every benchmark.

``closed_loop`` keeps ``concurrency`` requests in flight until ``total`` have
completed and returns latency percentiles; ``RssSampler`` records the peak
resident memory of a process tree while a load runs. Targets are loopback
addresses of servers the benchmark started itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    error_samples: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 1),
            "p95_ms": round(self.percentile(95), 1),
            "p99_ms": round(self.percentile(99), 1),
            "error_samples": self.error_samples[:3],
        }


async def _closed_loop(
    url: str, total: int, concurrency: int, method: str, json: Any, headers: dict[str, str], timeout: float
) -> LoadResult:
    latencies: list[float] = []
    errors: list[str] = []
    remaining = total
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                try:
                    async with session.request(method, url, json=json, headers=headers) as response:
                        await response.read()
                        if response.status >= 400:
                            errors.append(f"HTTP {response.status}")
                            continue
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(type(exc).__name__)
                    continue
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LoadResult(total, len(errors), elapsed, latencies, errors)


def closed_loop(
    url: str,
    total: int,
    concurrency: int,
    method: str = "GET",
    json: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> LoadResult:
    """Send total requests to url keeping concurrency in flight; return counts and latencies.

    Bounded in count (total) and in time (timeout per request).
    """
    return asyncio.run(_closed_loop(url, total, concurrency, method, json, headers or {}, timeout))


def closed_loops_at_once(
    urls: list[str], total: int, concurrency: int, json: Any, headers: list[dict[str, str]], timeout: float = 60
) -> list[LoadResult]:
    """POST total requests to each url at once, each keeping concurrency in flight; return one result per url.

    The servers share whatever else the machine does meanwhile: their CPU costs compare side by side.
    """

    async def together() -> list[LoadResult]:
        loops = (_closed_loop(url, total, concurrency, "POST", json, h, timeout) for url, h in zip(urls, headers, strict=True))
        return list(await asyncio.gather(*loops))

    return asyncio.run(together())


def tree_rss_mb(pid: int) -> float:
    """Return the memory of pid and all its descendants in MiB (0 if it has exited).

    Proportional set size (PSS): a page shared by n processes counts 1/n in
    each, so Postgres's shared buffers count once, as the container's cgroup
    counts them, not once per backend as a plain RSS sum would.
    """
    total_kb = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        proc = Path(f"/proc/{current}")
        try:
            for line in (proc / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
            for task in (proc / "task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total_kb / 1024


class RssSampler:
    """Sample a process tree's RSS every interval in a thread; ``peak_mb`` is the highest seen."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, tree_rss_mb(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, tree_rss_mb(self.pid))
