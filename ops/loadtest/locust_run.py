"""One scenario of the load test, run by Locust as a library, headless, in a process of its own.

``python -m ops.loadtest.locust_run SPEC.json OUT.json``: SPEC holds the gateway's URL and key, the
model, the users, the seconds and the share of streamed requests; OUT receives what Locust measured.
Locust's stats lines go to stderr every 2 s while it runs, and its final tables at the end.

Locust patches the standard library with gevent when it is imported (sockets, threads, subprocess), so it
never runs in the process of the ops CLI or of pytest: ops.loadtest.runner starts this module as a child.
Nothing above main() imports it.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any


def _body(spec: dict[str, Any], stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": spec["model"], "messages": [{"role": "user", "content": spec["prompt"]}]}
    if stream:
        body["stream"] = True
    return body


def status_key(status: int, exception: BaseException | None) -> str:
    """Given a failed request's HTTP status (0 when there was none) and its error, return its errors_by_status key."""
    return str(status) if status else f"connection ({type(exception).__name__})" if exception else "connection"


def main(argv: list[str]) -> int:
    spec: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    out = Path(argv[1])

    import gevent  # type: ignore[import-untyped]
    from locust import FastHttpUser, constant, task
    from locust.env import Environment
    from locust.log import setup_logging
    from locust.stats import print_percentile_stats, print_stats, stats_printer

    setup_logging("WARNING")  # type: ignore[no-untyped-call]  # Locust's own messages: warnings up; its stats lines are always printed (stderr)
    statuses: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {spec['key']}"}

    class ChatUser(FastHttpUser):
        """A client with no pause between requests, as the plan's locustfile (no wait_time)."""

        host = spec["url"]
        wait_time = constant(0)
        network_timeout = float(spec["timeout"])
        connection_timeout = 10.0
        insecure = False

        @task
        def chat(self) -> None:
            stream = random.random() < spec["stream_ratio"]
            name = "chat (streamed)" if stream else "chat"
            self.client.post("/v1/chat/completions", json=_body(spec, stream), headers=headers, name=name)

    def on_request(response: Any = None, exception: BaseException | None = None, **_: Any) -> None:
        if exception is not None:
            statuses[status_key(int(getattr(response, "status_code", 0) or 0), exception)] += 1

    # stop_timeout: at the end, each user finishes the request it has in flight (measured, not dropped: dropping the
    # slowest requests would flatter the percentiles); a request has at most spec["timeout"] anyway
    env = Environment(user_classes=[ChatUser], host=spec["url"], stop_timeout=float(spec["timeout"]))
    env.events.request.add_listener(on_request)  # type: ignore[no-untyped-call]
    runner = env.create_local_runner()
    printer = gevent.spawn(stats_printer(env.stats))
    started = time.monotonic()
    runner.start(spec["users"], spawn_rate=spec["users"])  # every user within the first second: a spike is a spike
    gevent.spawn_later(spec["seconds"], runner.quit)
    runner.greenlet.join()
    elapsed = time.monotonic() - started
    printer.kill()
    print_stats(env.stats, current=False)
    print_percentile_stats(env.stats)
    total = env.stats.total
    result = {
        "seconds": elapsed,
        "requests": total.num_requests,
        "failures": total.num_failures,
        "p50_ms": total.get_response_time_percentile(0.5) or 0.0,
        "p95_ms": total.get_response_time_percentile(0.95) or 0.0,
        "p99_ms": total.get_response_time_percentile(0.99) or 0.0,
        "max_ms": total.max_response_time or 0.0,
        "errors_by_status": dict(statuses),
        "error_samples": [str(e.error)[:200] for e in sorted(env.stats.errors.values(), key=lambda e: -e.occurrences)[:3]],
    }
    out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
