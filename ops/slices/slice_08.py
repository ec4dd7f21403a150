"""Slice 8: the observer runs, logs every event to JSONL, detects version mismatches and writes change requests.

The check needs the observer running (its heartbeat in Redis). It publishes
two probe events on a fresh aggregate under config/ (which always needs
approval): the first is held for approval, the second is held as a version
mismatch because git never got the first. Both are then rejected, so
nothing is committed.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ops.errors import OpsError
from ops.slices.base import Check, Target

NUMBER = 8
TITLE = "Observer agent"
REQUIRES: tuple[int, ...] = (7,)
SERVICES: tuple[str, ...] = ("observer",)
FILES: tuple[str, ...] = ()
DATABASES: tuple[str, ...] = ()


def verify(target: Target) -> list[Check]:
    if target.settings is None:
        return [Check("observer", False, "no project settings to reach Redis: run it as `make slice-8`")]
    from ops.events.context import events_config
    from ops.events.probe import probe_event, wait_for_change
    from ops.events.publisher import Publisher

    try:
        config = events_config(target.settings)
        observer = config.observer()
        beat: Any = observer.client.get(observer.heartbeat_key)
        checks = [Check("observer running", beat is not None, f"last heartbeat {beat}" if beat else "no heartbeat in 30 s")]
        if beat is None:
            return checks  # nothing would read a probe
        publisher = Publisher(observer.client, config.streams)
        aggregate = f"ops:slice-8-{uuid.uuid4().hex[:10]}"
        first = probe_event(aggregate, 1, f"/config/{aggregate.split(':')[1]}", note="held for approval")
        second = probe_event(aggregate, 2, f"/config/{aggregate.split(':')[1]}", note="held as a mismatch")
        publisher.publish(first)
        publisher.publish(second)
        store = observer.store
        held = wait_for_change(store, first["event_id"], lambda c: c.status == "pending")
        mismatch = wait_for_change(store, second["event_id"], lambda c: c.status == "pending")
        checks.append(Check("change requests written", held is not None and (store.directory / f"{held.id}.json").is_file(),
                            f"{held.id}: {held.reason}" if held else "no change request within 15 s"))  # fmt: skip
        checks.append(Check("version mismatch detected", mismatch is not None and "version conflict" in mismatch.reason,
                            mismatch.reason if mismatch else "no change request within 15 s"))  # fmt: skip
        lines = observer.log.path.read_text().splitlines()[-50:] if observer.log.path.exists() else []
        logged = [json.loads(line)["event"]["event_id"] for line in lines]
        checks.append(Check("events logged to JSONL", second["event_id"] in logged, str(observer.log.path)))
        for cr in (held, mismatch):
            if cr is not None and cr.status == "pending":
                store.decide(cr.id, False, "ops-slice-check", "probe")
    except OpsError as exc:
        return [Check("observer", False, str(exc))]
    return checks
