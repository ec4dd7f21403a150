"""Slice 7: events are written to Redis Streams, readable with XREAD, validated, and the schema documented.

The check publishes a probe event (resource /ops/..., outside every root the
observer writes, so it is logged and rejected, never committed), reads it
back with XREAD, retries it (no duplicate), and has a malformed one refused.
"""

from __future__ import annotations

import uuid
from typing import Any

from ops.config import Settings
from ops.errors import OpsError
from ops.slices.base import Check, Target

NUMBER = 7
TITLE = "Event schema + Redis Streams"
REQUIRES: tuple[int, ...] = ()
SERVICES: tuple[str, ...] = ("redis",)
FILES: tuple[str, ...] = ("docs/EVENT_SCHEMA.md",)
DATABASES: tuple[str, ...] = ()


def install(settings: Settings) -> list[str]:
    """Before the observer first starts (slice 8), share its state directory with the operators' group
    (OPS_EVENTS_GROUP, default aistack; created when run as root), setgid, and turn its profile (events) on in
    vps.env once the truth repository exists; return what changed."""
    from ops.events.context import events_config
    from ops.profiles import enable_events_when_ready

    return [*events_config(settings).share_state_dir(create=True), *enable_events_when_ready(settings)]


def verify(target: Target) -> list[Check]:
    if target.settings is None:
        return [Check("events", False, "no project settings to reach Redis: run it as `make slice-7`")]
    from ops.events.context import events_config
    from ops.events.probe import probe_event
    from ops.events.publisher import Publisher
    from ops.events.schema import InvalidEvent

    schema = target.settings.project_dir / "docs" / "EVENT_SCHEMA.md"
    checks = [Check("schema documented", schema.is_file(), str(schema))]
    try:
        config = events_config(target.settings)
        client = config.client()
        publisher = Publisher(client, config.streams)
        raw = probe_event(f"ops:slice-7-{uuid.uuid4().hex[:10]}", 1, "/ops/slice-7-probe")
        published = publisher.publish(raw)
        read: Any = client.xread({config.streams.name: _before(published.stream_id)}, count=1)
        seen = read[0][1][0][1]["event_id"] if read else ""
        checks.append(Check("events written", bool(published.stream_id), f"{raw['event_id']} at {published.stream_id}"))
        checks.append(Check("events readable via XREAD", seen == raw["event_id"], f"XREAD returned {seen or 'nothing'}"))
        again = publisher.publish(raw)
        checks.append(Check("a retried publish is not duplicated", again.duplicate and again.stream_id == published.stream_id,
                            f"retry answered {again.stream_id} (duplicate={again.duplicate})"))  # fmt: skip
        broken = {**raw, "event_id": "evt_" + uuid.uuid4().hex, "version": "two"}
        try:
            publisher.publish(broken)
            checks.append(Check("invalid events refused", False, "an event with version 'two' was accepted"))
        except InvalidEvent as exc:
            checks.append(Check("invalid events refused", exc.field == "version", str(exc)))
    except OpsError as exc:
        checks.append(Check("events written", False, str(exc)))
    return checks


def _before(stream_id: str) -> str:
    """The id just before stream_id: XREAD returns what follows an id, so stream_id comes first."""
    ms, _, seq = stream_id.partition("-")
    return f"{ms}-{int(seq) - 1}" if int(seq) > 0 else f"{int(ms) - 1}-{2**64 - 1}"
