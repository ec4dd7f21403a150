"""ops.events.schema: what an agent's event must be, and each field's refusal (docs/EVENT_SCHEMA.md).

Each case breaks one field of a valid event and expects InvalidEvent naming
that field with its reason; nothing that fails here reaches the stream.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from ops.events.schema import MAX_EVENT_BYTES, InvalidEvent, new_event_id, parse_event

VALID: dict[str, Any] = {
    "event_id": "evt_20261122_a1b2c3d4e5f6",
    "event_type": "agent.action.completed",
    "aggregate_id": "project:life-os",
    "version": 1,
    "timestamp": "2026-11-22T10:30:00Z",
    "agent": {"model": "claude-3", "agent_id": "agent-main", "session_id": "session-xyz"},
    "payload": {"action": "task_created", "resource": "/tasks/task-456", "data": {"title": "Buy milk"}, "reasoning": ""},
    "metadata": {"correlation_id": "req-789", "approval_required": False},
}


def changed(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set (or, with value DROP, remove) the field at a dotted path of the event."""

    def apply(raw: dict[str, Any]) -> None:
        *parents, key = path.split(".")
        target = raw
        for parent in parents:
            target = target[parent]
        if value is DROP:
            del target[key]
        else:
            target[key] = value

    return apply


DROP = object()
TOP = ("event_id", "event_type", "aggregate_id", "version", "timestamp", "agent", "payload", "metadata")
NESTED = {
    "agent": ("model", "agent_id", "session_id"),
    "payload": ("action", "resource", "data", "reasoning"),
    "metadata": ("correlation_id", "approval_required"),
}

# case -> (change, field named, reason)
REFUSED: dict[str, tuple[Callable[[dict[str, Any]], None], str, str]] = {
    **{f"no {key}": (changed(key, DROP), key, "is required") for key in TOP},
    **{f"no {o}.{k}": (changed(f"{o}.{k}", DROP), f"{o}.{k}", "is required") for o, keys in NESTED.items() for k in keys},
    "an extra top-level field": (changed("extra", 1), "extra", "is not part of the schema"),
    "an extra agent field": (changed("agent.name", "x"), "agent.name", "is not part of the schema"),
    "an extra payload field": (changed("payload.path", "x"), "payload.path", "is not part of the schema"),
    "an extra metadata field": (changed("metadata.priority", 1), "metadata.priority", "is not part of the schema"),
    "agent not an object": (changed("agent", "claude"), "agent", "must be an object, got str"),
    "payload not an object": (changed("payload", []), "payload", "must be an object, got list"),
    "metadata not an object": (changed("metadata", None), "metadata", "must be an object, got NoneType"),
    # version: a whole number from 1
    "version 0": (changed("version", 0), "version", "must be a whole number of at least 1, got 0"),
    "version negative": (changed("version", -2), "version", "must be a whole number of at least 1, got -2"),
    "version as text": (changed("version", "3"), "version", "must be a whole number of at least 1, got '3'"),
    "version a fraction": (changed("version", 1.5), "version", "must be a whole number of at least 1, got 1.5"),
    "version true": (changed("version", True), "version", "must be a whole number of at least 1, got True"),
    # timestamp: ISO 8601 with a zone
    "timestamp empty": (changed("timestamp", ""), "timestamp", "must be a non-empty string"),
    "timestamp a number": (changed("timestamp", 1764000000), "timestamp", "must be a non-empty string"),
    "timestamp too long": (changed("timestamp", "2026-11-22T10:30:00" + "0" * 22), "timestamp", "is longer than 40 characters"),
    "timestamp not a time": (changed("timestamp", "yesterday"), "timestamp", "'yesterday' is not an ISO 8601 time"),
    "timestamp without a zone": (
        changed("timestamp", "2026-11-22 10:30"),
        "timestamp",
        "'2026-11-22 10:30' has no time zone (use Z for UTC)",
    ),
    # the identifiers' shapes
    "event_id without evt_": (changed("event_id", "42"), "event_id", "'42' does not match ^evt_[A-Za-z0-9_-]{6,80}$"),
    "event_id too short": (changed("event_id", "evt_abc"), "event_id", "'evt_abc' does not match"),
    "event_id with a space": (changed("event_id", "evt_2026 1122"), "event_id", "does not match"),
    "event_type without a dot": (changed("event_type", "completed"), "event_type", "'completed' does not match"),
    "event_type in capitals": (changed("event_type", "Agent.Action"), "event_type", "does not match"),
    "aggregate_id without a kind": (changed("aggregate_id", "life-os"), "aggregate_id", "'life-os' does not match"),
    "aggregate_id with a slash": (changed("aggregate_id", "project:a/b"), "aggregate_id", "does not match"),
    "agent.model blank": (changed("agent.model", "   "), "agent.model", "must be a non-empty string"),
    "agent.session_id too long": (changed("agent.session_id", "s" * 201), "agent.session_id", "is longer than 200 characters"),
    "agent.agent_id a number": (changed("agent.agent_id", 7), "agent.agent_id", "must be a non-empty string"),
    # the payload
    "payload.action in capitals": (changed("payload.action", "Task_Created"), "payload.action", "'Task_Created' does not match"),
    "payload.action with a dot": (changed("payload.action", "task.created"), "payload.action", "does not match"),
    "payload.resource empty": (changed("payload.resource", ""), "payload.resource", "must be a non-empty string"),
    "payload.resource too long": (
        changed("payload.resource", "/tasks/" + "r" * 294),
        "payload.resource",
        "is longer than 300 characters",
    ),
    "payload.data a list": (changed("payload.data", [1]), "payload.data", "must be an object, got list"),
    "payload.data text": (changed("payload.data", "title"), "payload.data", "must be an object, got str"),
    "payload.reasoning not text": (changed("payload.reasoning", None), "payload.reasoning", "must be a string"),
    # the metadata
    "approval_required as text": (
        changed("metadata.approval_required", "no"),
        "metadata.approval_required",
        "must be true or false, got 'no'",
    ),
    "approval_required as 0": (
        changed("metadata.approval_required", 0),
        "metadata.approval_required",
        "must be true or false, got 0",
    ),
    "correlation_id empty": (changed("metadata.correlation_id", ""), "metadata.correlation_id", "must be a non-empty string"),
    # the whole event's size, after parsing
    "data over the size limit": (
        changed("payload.data", {"text": "x" * MAX_EVENT_BYTES}),
        "event",
        f"is larger than {MAX_EVENT_BYTES} bytes",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_each_field_is_refused_by_name(case: str) -> None:
    change, field, reason = REFUSED[case]
    raw = copy.deepcopy(VALID)
    change(raw)
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.field == field
    assert reason in caught.value.reason, caught.value.reason
    assert str(caught.value) == f"invalid event: {field}: {caught.value.reason}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "is not JSON: "),
        ("", "is not JSON: "),
        (b"\xff\xfe{", "is not JSON: "),
        ("x" * (MAX_EVENT_BYTES + 1), f"is larger than {MAX_EVENT_BYTES} bytes"),  # refused before parsing
    ],
    ids=["truncated", "empty", "not utf-8", "too large"],
)
def test_text_that_is_not_one_json_event_is_refused(text: str | bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(text)
    assert caught.value.field == "event"
    assert caught.value.reason.startswith(reason)


@pytest.mark.parametrize("raw", [[VALID], "[]", "42", "null"], ids=["a list", "a JSON list", "a number", "null"])
def test_an_event_that_is_not_an_object_is_refused(raw: Any) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.reason.startswith("must be an object, got ")
    assert str(caught.value).startswith("invalid event: the event must be an object, got ")  # no empty field name


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("timestamp", "2026-11-22T10:30:00+02:00"),  # any zone, not only Z
        ("timestamp", "2026-11-22T10:30:00.123456Z"),
        ("version", 41),
        ("payload.reasoning", ""),  # reasoning may be empty
        ("payload.data", {}),
        ("metadata.approval_required", True),
        ("event_id", new_event_id()),  # what new_event_id makes is valid
        ("aggregate_id", "workflow:n8n.router-2"),
        ("payload.resource", "/" + "r" * 299),  # 300 characters: the limit
    ],
)
def test_valid_variants_are_accepted(path: str, value: Any) -> None:
    raw = copy.deepcopy(VALID)
    changed(path, value)(raw)
    event = parse_event(raw)
    assert event.to_dict() == raw


def test_dict_text_and_bytes_give_the_same_event_and_it_round_trips() -> None:
    event = parse_event(VALID)
    assert parse_event(json.dumps(VALID)) == event
    assert parse_event(json.dumps(VALID).encode()) == event
    assert parse_event(event.to_json()) == event
    assert (event.version, event.agent.model, event.payload.data, event.metadata.approval_required) == (
        1,
        "claude-3",
        {"title": "Buy milk"},
        False,
    )
