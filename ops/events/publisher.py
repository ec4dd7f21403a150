"""Publish events: validate, then append atomically with optimistic concurrency and idempotency.

One Lua script does the whole append in one Redis step: if the event id was
published before, it returns the first stream id (a retried publish never
duplicates); if the event's version is not the aggregate's current version
+ 1, it refuses with the current version (the agent re-reads and retries);
otherwise it appends the event and records the new version and the id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from ops.config import redact_url
from ops.errors import ConfigError, OpsError, ServiceError
from ops.events.schema import Event, parse_event

ID_TTL_SECONDS = 30 * 24 * 3600  # how long a retried publish is recognised

APPEND = """
local first = redis.call('GET', KEYS[3])
if first then return {'duplicate', first} end
local current = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
if tonumber(ARGV[3]) ~= current + 1 then return {'conflict', tostring(current)} end
local id = redis.call('XADD', KEYS[1], '*', 'event_id', ARGV[1], 'aggregate_id', ARGV[2],
                      'version', ARGV[3], 'event_type', ARGV[4], 'event', ARGV[5])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('SET', KEYS[3], id, 'EX', ARGV[6])
return {'ok', id}
"""


class VersionConflict(OpsError):
    """The aggregate moved on: the event's version is not current + 1."""

    def __init__(self, aggregate_id: str, version: int, current: int) -> None:
        super().__init__(
            f"version conflict on {aggregate_id}: the event has version {version}, the aggregate is at {current} "
            f"(expected {current + 1}); re-read it and publish again"
        )
        self.aggregate_id, self.version, self.current = aggregate_id, version, current


@dataclass(frozen=True)
class Streams:
    """The Redis keys of one event log."""

    name: str = "agent_events"

    @property
    def dead(self) -> str:
        return f"{self.name}:dead"

    @property
    def versions(self) -> str:
        return f"{self.name}:versions"

    def id_key(self, event_id: str) -> str:
        return f"{self.name}:id:{event_id}"


@dataclass(frozen=True)
class Published:
    event_id: str
    stream_id: str
    duplicate: bool

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "stream_id": self.stream_id, "duplicate": self.duplicate}


class RedisRefused(ServiceError):
    """Redis answered but refused a command (out of memory, a read-only replica, a key of the wrong type)."""


def explain(exc: redis.RedisError, doing: str) -> RedisRefused:
    """Given a Redis error that is not a lost connection, return a RedisRefused saying what it means for the user."""
    said = str(exc)  # redis-py strips the error code (OOM, READONLY) and maps it to a class
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or said.startswith("OOM") or "maxmemory" in said:
        why = "Redis is out of memory (maxmemory reached, noeviction): free memory or raise maxmemory"
    elif isinstance(exc, redis.ReadOnlyError) or said.startswith("READONLY"):
        why = "Redis is a read-only replica: point OPS_REDIS_URL at the primary"
    elif said.startswith("WRONGTYPE"):
        why = "a Redis key of the event log holds another type: another program uses the same key names"
    elif isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError):
        why = "Redis refused the credentials in OPS_REDIS_URL (or their ACL forbids this command)"
    else:
        why = "Redis refused the command"
    return RedisRefused(f"{doing} failed: {why}; nothing was written or acknowledged (Redis said: {said[:200]})")


def connect(url: str, name: str = "OPS_REDIS_URL") -> redis.Redis:
    """Return a client for url. Raise ConfigError if it is malformed, ServiceError naming the problem if Redis
    does not answer or refuses the password; neither shows the password."""
    shown = redact_url(url)
    try:
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=10, health_check_interval=30)
    except ValueError:
        raise ConfigError(f"{name} is malformed: {shown}") from None  # redis-py's message may quote the password
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise ServiceError(f"Redis refused the password in {name} ({shown}): {exc}") from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise ServiceError(f"cannot reach Redis at {shown} ({name}): {exc}") from exc
    except redis.RedisError as exc:
        raise explain(exc, f"connecting to Redis at {shown}") from exc
    return client


class Publisher:
    def __init__(self, client: redis.Redis, streams: Streams | None = None) -> None:
        self.client = client
        self.streams = streams or Streams()
        self._append = client.register_script(APPEND)

    def publish(self, raw: Event | dict[str, Any] | str) -> Published:
        """Validate and append one event; return its stream id (the first one, for a retry).

        Raise InvalidEvent naming the field, VersionConflict if the aggregate
        is not at version - 1, ServiceError if Redis fails (RedisRefused when it
        answers but refuses: out of memory, read-only; nothing is appended then).
        """
        event = raw if isinstance(raw, Event) else parse_event(raw)
        keys = [self.streams.name, self.streams.versions, self.streams.id_key(event.event_id)]
        args: list[str | int] = [
            event.event_id,
            event.aggregate_id,
            event.version,
            event.event_type,
            event.to_json(),
            ID_TTL_SECONDS,
        ]
        try:
            outcome, value = self._append(keys=keys, args=args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ServiceError(f"publishing {event.event_id} failed: Redis did not answer: {exc}") from exc
        except redis.RedisError as exc:
            raise explain(exc, f"publishing {event.event_id}") from exc
        if outcome == "conflict":
            raise VersionConflict(event.aggregate_id, event.version, int(value))
        return Published(event.event_id, value, outcome == "duplicate")

    def current_version(self, aggregate_id: str) -> int:
        return int(self.client.hget(self.streams.versions, aggregate_id) or 0)
