"""Read the event stream through a consumer group: at-least-once, acknowledged after the effects.

Each entry is handled, then acknowledged (XACK); a handler that raises leaves
it pending. Pending entries idle longer than ``claim_idle_ms`` (a consumer
crashed, or a handler failed) are claimed again with XAUTOCLAIM. After
``max_deliveries`` failed deliveries, or at once for an entry that is not a
valid event, the entry moves to the dead-letter stream with the reason (the
copy and the acknowledgement in one MULTI, so it is never lost in between).
When Redis itself fails (a lost connection, or a refusal: out of memory, a
read-only replica), the batch stops and the error is raised (RedisRefused
for a refusal): the entry stays pending and the failure is not counted
against the event. ``trim`` drops only entries every group has acknowledged.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from ops.events.publisher import RedisRefused, Streams, explain
from ops.events.schema import Event, InvalidEvent, parse_event

Handler = Callable[[str, Event], None]


@dataclass
class Stats:
    handled: int = 0
    failed: int = 0
    dead: int = 0
    claimed: int = 0
    errors: list[str] = field(default_factory=list)


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Consumer:
    def __init__(
        self,
        client: redis.Redis,
        handler: Handler,
        streams: Streams | None = None,
        group: str = "observer",
        name: str | None = None,
        max_deliveries: int = 5,
        claim_idle_ms: int = 60_000,
        batch: int = 50,
    ) -> None:
        self.client, self.handler = client, handler
        self.streams = streams or Streams()
        self.group, self.name = group, name or default_name()
        self.max_deliveries, self.claim_idle_ms, self.batch = max_deliveries, claim_idle_ms, batch
        self.stats = Stats()

    def ensure_group(self) -> None:
        """Create the consumer group (from the stream's start) unless it exists."""
        try:
            self.client.xgroup_create(self.streams.name, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise explain(exc, f"creating the consumer group {self.group}") from exc

    def poll(self, block_ms: int = 2000) -> int:
        """Handle one batch: reclaimed entries first, then new ones (waiting up to block_ms). Return how many.

        Raise redis.ConnectionError if Redis is unreachable, RedisRefused if
        it refuses a command; unacknowledged entries stay pending either way.
        """
        try:
            return self._poll(block_ms)
        except (redis.ConnectionError, redis.TimeoutError):
            raise
        except redis.RedisError as exc:
            raise explain(exc, f"reading {self.streams.name}") from exc

    def _poll(self, block_ms: int) -> int:
        claim: Any = self.client.xautoclaim(
            self.streams.name, self.group, self.name, self.claim_idle_ms, start_id="0-0", count=self.batch
        )
        entries: list[tuple[str, dict[str, str]]] = [e for e in claim[1] if e and e[1] is not None]
        self.stats.claimed += len(entries)
        if not entries:
            response: Any = self.client.xreadgroup(
                self.group, self.name, {self.streams.name: ">"}, count=self.batch, block=block_ms
            )
            entries = response[0][1] if response else []
        for stream_id, fields in entries:
            self._handle(stream_id, fields)
        return len(entries)

    def _handle(self, stream_id: str, fields: dict[str, str]) -> None:
        try:
            event = parse_event(fields.get("event", ""))
        except InvalidEvent as exc:
            self._dead(stream_id, fields, str(exc), 1)
            return
        try:
            self.handler(stream_id, event)
        except (redis.RedisError, RedisRefused):
            raise  # Redis failed, not this event: stop the batch, the entry stays pending
        except Exception as exc:
            self.stats.failed += 1
            self.stats.errors.append(f"{event.event_id}: {exc}")
            delivered = self._deliveries(stream_id)
            if delivered >= self.max_deliveries:
                self._dead(stream_id, fields, f"failed {delivered} deliveries; last: {type(exc).__name__}: {exc}", delivered)
            return
        self.client.xack(self.streams.name, self.group, stream_id)
        self.stats.handled += 1

    def _deliveries(self, stream_id: str) -> int:
        rows: Any = self.client.xpending_range(self.streams.name, self.group, min=stream_id, max=stream_id, count=1)
        return int(rows[0]["times_delivered"]) if rows else 1

    def _dead(self, stream_id: str, fields: dict[str, str], reason: str, deliveries: int) -> None:
        with self.client.pipeline(transaction=True) as tx:
            tx.xadd(
                self.streams.dead,
                {
                    "original_id": stream_id,
                    "group": self.group,
                    "reason": reason[:2000],
                    "deliveries": deliveries,
                    "event": fields.get("event", repr(fields))[:262144],
                },
            )
            tx.xack(self.streams.name, self.group, stream_id)
            tx.execute()
        self.stats.dead += 1


def trim(client: redis.Redis, streams: Streams | None = None, keep_last: int = 0) -> int:
    """Drop entries every consumer group has acknowledged, keeping the newest keep_last; return how many.

    Nothing unacknowledged or undelivered is dropped.
    """
    streams = streams or Streams()
    try:
        groups: Any = client.xinfo_groups(streams.name)
    except redis.ResponseError:
        return 0  # no stream yet
    if not groups:
        return 0  # nobody has read anything: keep it all
    floor: list[tuple[int, int]] = []
    for group in groups:
        pending: Any = client.xpending(streams.name, group["name"])
        if pending["pending"]:
            floor.append(_split(pending["min"]))
        else:
            ms, seq = _split(group["last-delivered-id"])
            floor.append((ms, seq + 1))
    if keep_last:
        newest: Any = client.xrevrange(streams.name, count=keep_last)
        if len(newest) < keep_last:
            return 0
        floor.append(_split(newest[-1][0]))
    ms, seq = min(floor)
    return int(client.xtrim(streams.name, minid=f"{ms}-{seq}", approximate=False))


def _split(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)
