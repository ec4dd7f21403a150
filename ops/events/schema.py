"""The event an agent publishes: one typed, validated record (docs/EVENT_SCHEMA.md).

``parse_event`` takes what arrived (a dict, or JSON text) and returns an
Event, or raises InvalidEvent naming the field and the reason. Nothing that
fails validation reaches the stream.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from ops.errors import OpsError

MAX_EVENT_BYTES = 256 * 1024
EVENT_ID = re.compile(r"^evt_[A-Za-z0-9_-]{6,80}$")
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
AGGREGATE_ID = re.compile(r"^[a-z][a-z0-9_-]*:[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
ACTION = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class InvalidEvent(OpsError):
    """An event failed validation; ``field`` names where."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid event: {field}: {reason}" if field else f"invalid event: the event {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Agent:
    model: str
    agent_id: str
    session_id: str


@dataclass(frozen=True)
class Payload:
    action: str
    resource: str
    data: dict[str, Any]
    reasoning: str


@dataclass(frozen=True)
class Metadata:
    correlation_id: str
    approval_required: bool


@dataclass(frozen=True)
class Event:
    event_id: str
    event_type: str
    aggregate_id: str
    version: int
    timestamp: str
    agent: Agent
    payload: Payload
    metadata: Metadata

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


def new_event_id(now: datetime | None = None) -> str:
    """Return a fresh id like evt_20261122_a1b2c3d4e5f6 (the plan's shape, unique)."""
    return f"evt_{(now or datetime.now(UTC)).strftime('%Y%m%d')}_{secrets.token_hex(6)}"


def _object(raw: Any, field: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidEvent(field, f"must be an object, got {type(raw).__name__}")
    missing = [k for k in keys if k not in raw]
    if missing:
        raise InvalidEvent(f"{field}.{missing[0]}" if field else missing[0], "is required")
    extra = sorted(set(raw) - set(keys))
    if extra:
        raise InvalidEvent(f"{field}.{extra[0]}" if field else extra[0], "is not part of the schema")
    return raw


def _text(value: Any, field: str, pattern: re.Pattern[str] | None = None, limit: int = 200) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(field, "must be a non-empty string")
    if len(value) > limit:
        raise InvalidEvent(field, f"is longer than {limit} characters")
    if pattern is not None and not pattern.match(value):
        raise InvalidEvent(field, f"{value!r} does not match {pattern.pattern}")
    return value


def parse_event(raw: dict[str, Any] | str | bytes) -> Event:
    """Given an event as a dict or JSON, return the Event. Raise InvalidEvent naming the field and the reason."""
    if isinstance(raw, str | bytes):
        if len(raw) > MAX_EVENT_BYTES:
            raise InvalidEvent("event", f"is larger than {MAX_EVENT_BYTES} bytes")
        try:
            raw = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidEvent("event", f"is not JSON: {exc}") from exc
    top = _object(raw, "", ("event_id", "event_type", "aggregate_id", "version", "timestamp", "agent", "payload", "metadata"))
    version = top["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidEvent("version", f"must be a whole number of at least 1, got {version!r}")
    stamp = _text(top["timestamp"], "timestamp", limit=40)
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidEvent("timestamp", f"{stamp!r} is not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise InvalidEvent("timestamp", f"{stamp!r} has no time zone (use Z for UTC)")
    agent = _object(top["agent"], "agent", ("model", "agent_id", "session_id"))
    payload = _object(top["payload"], "payload", ("action", "resource", "data", "reasoning"))
    if not isinstance(payload["data"], dict):
        raise InvalidEvent("payload.data", f"must be an object, got {type(payload['data']).__name__}")
    if not isinstance(payload["reasoning"], str):
        raise InvalidEvent("payload.reasoning", "must be a string")
    metadata = _object(top["metadata"], "metadata", ("correlation_id", "approval_required"))
    if not isinstance(metadata["approval_required"], bool):
        raise InvalidEvent("metadata.approval_required", f"must be true or false, got {metadata['approval_required']!r}")
    event = Event(
        event_id=_text(top["event_id"], "event_id", EVENT_ID),
        event_type=_text(top["event_type"], "event_type", EVENT_TYPE),
        aggregate_id=_text(top["aggregate_id"], "aggregate_id", AGGREGATE_ID),
        version=version,
        timestamp=stamp,
        agent=Agent(*(_text(agent[k], f"agent.{k}") for k in ("model", "agent_id", "session_id"))),
        payload=Payload(
            _text(payload["action"], "payload.action", ACTION),
            _text(payload["resource"], "payload.resource", limit=300),
            payload["data"],
            payload["reasoning"],
        ),
        metadata=Metadata(_text(metadata["correlation_id"], "metadata.correlation_id"), metadata["approval_required"]),
    )
    if len(event.to_json()) > MAX_EVENT_BYTES:
        raise InvalidEvent("event", f"is larger than {MAX_EVENT_BYTES} bytes")
    return event
