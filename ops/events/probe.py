"""Probe events the slice checks publish: real events, marked as ops's own, on resources that say so."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ops.errors import OpsError
from ops.events.changes import CR_ID_PREFIX, ChangeRequest, ChangeStore
from ops.events.schema import new_event_id


def probe_event(aggregate_id: str, version: int, resource: str, approval_required: bool = False, **data: Any) -> dict[str, Any]:
    return {
        "event_id": new_event_id(),
        "event_type": "ops.probe.published",
        "aggregate_id": aggregate_id,
        "version": version,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "agent": {"model": "none", "agent_id": "ops-slice-check", "session_id": aggregate_id},
        "payload": {"action": "probe_written", "resource": resource, "data": data, "reasoning": "a slice's success check"},
        "metadata": {"correlation_id": aggregate_id, "approval_required": approval_required},
    }


def wait_for_change(
    store: ChangeStore, event_id: str, ready: Callable[[ChangeRequest], bool], within: float = 15
) -> ChangeRequest | None:
    """Poll until event_id's change request exists and ready(it) holds; return it, or None after within seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            cr = store.get(CR_ID_PREFIX + event_id)
            if ready(cr):
                return cr
        except OpsError:
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.3)
