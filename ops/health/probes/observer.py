"""The observer: its heartbeat key in Redis, which it sets on every poll (about once a second) to expire after 30 s.

source: ops/events/observer.py, Observer.run (heartbeat_key, HEARTBEAT_TTL). A missing key means no observer
has polled for HEARTBEAT_TTL seconds: stopped, crash-looping, or stuck. Skipped unless the `events` profile is
on (COMPOSE_PROFILES): without it no observer runs.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ops.config import Settings
from ops.health.base import Down, ProbeResult, measure, skipped
from ops.health.probes import redis as redis_probe

NAME = "observer"


def probe(settings: Settings, timeout: float) -> ProbeResult:
    """Given Settings and seconds, return the observer's result (skipped without the events profile): ok while its
    heartbeat key is in Redis, saying how long ago it polled.

    Raise ConfigError naming the variable if the events' configuration (the stream's name among it) or
    OPS_REDIS_URL is malformed.
    """
    if "events" not in settings.profiles:
        return skipped(NAME, "the events profile is off (COMPOSE_PROFILES): no observer runs")
    from ops.events.context import events_config  # here: the events' imports are not cheap
    from ops.events.observer import HEARTBEAT_TTL, heartbeat_key

    key = heartbeat_key(events_config(settings).streams.name)  # the stream the observer itself reads
    connection, shown = redis_probe.client(settings, timeout)

    def exchange() -> str:
        beat = redis_probe.ask(lambda: connection.get(key), shown, timeout)
        if beat is None:
            raise Down(f"no heartbeat ({key} in Redis) for {HEARTBEAT_TTL} s: the observer is not polling")
        try:
            age = (datetime.now(UTC) - datetime.fromisoformat(str(beat))).total_seconds()
        except ValueError:
            return f"heartbeat {key} present"
        return f"last poll {max(age, 0.0):.1f} s ago"

    try:
        return measure(NAME, exchange)
    finally:
        connection.close()
