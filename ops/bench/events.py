"""`ops bench events`: how fast events go in, and from publish to a pushed git commit, against Redis's own ceiling.

On a real Redis 7 (AOF everysec, as on the VM): redis-benchmark's XADD
rate with one client and no pipelining (the ceiling for one publisher),
the plan's way from Python (a plain XADD through redis-py), and our publisher
(validation + the Lua append with its version check and idempotency key),
each with one client and the same events. Then end to
end: events on distinct resources published while the observer consumes,
decides and commits each one to a real git repository with a bare remote,
pushing every commit.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from ops.errors import ServiceError
from ops.events.observer import Observer, Policy
from ops.events.probe import probe_event
from ops.events.publisher import Publisher
from ops.events.reconciler import Reconciler
from ops.local.processes import RedisServer


@dataclass(frozen=True)
class EventsBench:
    events: int
    ceiling_per_s: float
    plain_per_s: float
    published_per_s: float
    end_to_end: int
    end_to_end_per_s: float
    end_to_end_p50_ms: float
    end_to_end_max_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "xadd_ceiling_per_s": round(self.ceiling_per_s),
            "plain_xadd_from_python_per_s": round(self.plain_per_s),
            "publish_vs_plain": round(self.published_per_s / self.plain_per_s, 2),
            "published_per_s": round(self.published_per_s),
            "publish_ratio": round(self.published_per_s / self.ceiling_per_s, 2),
            "end_to_end_events": self.end_to_end,
            "end_to_end_per_s": round(self.end_to_end_per_s, 1),
            "end_to_end_p50_ms": round(self.end_to_end_p50_ms),
            "end_to_end_max_ms": round(self.end_to_end_max_ms),
        }


def _ceiling(server: RedisServer, events: int) -> float:
    argv = ["redis-benchmark", "-p", str(server.port), "-a", server.password, "-c", "1", "-n", str(events), "--csv"]
    proc = subprocess.run([*argv, "xadd", "bench:ceiling", "*", "event", "x" * 600], capture_output=True, text=True)
    match = re.search(r'"([\d.]+)"', proc.stdout.splitlines()[-1] if proc.stdout else "")
    if proc.returncode != 0 or not match:
        raise ServiceError(f"redis-benchmark failed: {(proc.stderr or proc.stdout)[-300:]}")
    return float(match.group(1))


def _git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True)


def run_events_bench(events: int = 5000, end_to_end: int = 200) -> EventsBench:
    """Measure the publish rate against redis-benchmark's XADD and the publish-to-commit rate; return the figures.

    Raise ServiceError if redis-server or redis-benchmark is missing or fails.
    """
    with RedisServer() as server, tempfile.TemporaryDirectory() as tmp:
        ceiling = _ceiling(server, events)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        publisher = Publisher(client)
        batch = [probe_event("bench:publish", v, f"/tasks/t{v}") for v in range(1, events + 1)]
        started = time.perf_counter()
        for raw in batch:
            publisher.publish(raw)
        published = events / (time.perf_counter() - started)
        # the plan's way: a plain XADD of the event, no validation, no version check, no idempotency
        started = time.perf_counter()
        for raw in batch:
            client.xadd("bench:plain", {"event_id": raw["event_id"], "event": json.dumps(raw)})
        plain = events / (time.perf_counter() - started)

        remote, work = Path(tmp) / "remote.git", Path(tmp) / "work"
        _git("init", "-q", "--bare", "-b", "main", str(remote))
        _git("clone", "-q", str(remote), str(work))
        _git("-C", str(work), "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "--allow-empty", "-m", "start")
        _git("-C", str(work), "push", "-q", "origin", "HEAD:main")
        client.delete("agent_events")  # the end-to-end run reads a fresh stream
        observer = Observer(client, Path(tmp) / "state", Reconciler(work, Policy().roots))
        stop = threading.Event()
        runner = threading.Thread(target=observer.run, args=(stop,), daemon=True)
        sent: dict[str, float] = {}
        runner.start()
        try:
            started = time.perf_counter()
            for v in range(1, end_to_end + 1):
                raw = probe_event("bench:e2e", v, f"/tasks/e2e-{v}", n=v)
                sent["cr_" + raw["event_id"]] = time.perf_counter()
                publisher.publish(raw)
            latencies = _wait_applied(observer, sent, started + 600)
            elapsed = time.perf_counter() - started
        finally:
            stop.set()
            runner.join(30)
            with contextlib.suppress(Exception):
                client.close()
    latencies.sort()
    return EventsBench(
        events,
        ceiling,
        plain,
        published,
        end_to_end,
        end_to_end / elapsed,
        latencies[len(latencies) // 2] * 1000,
        latencies[-1] * 1000,
    )


def _wait_applied(observer: Observer, sent: dict[str, float], deadline: float) -> list[float]:
    """Poll the change requests until every one sent is applied; return each one's publish-to-commit seconds."""
    done: dict[str, float] = {}
    while len(done) < len(sent):
        if time.perf_counter() > deadline:
            raise ServiceError(f"only {len(done)} of {len(sent)} events were committed in time")
        applied: Any = observer.client.smembers(observer.store.index_key("applied"))
        for cr_id in applied:
            if cr_id in sent and cr_id not in done:
                done[cr_id] = time.perf_counter() - sent[cr_id]
        time.sleep(0.05)
    return list(done.values())
