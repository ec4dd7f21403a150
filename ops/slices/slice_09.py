"""Slice 9: low-risk changes are committed (and pushed) by the observer; high-risk ones wait for approval.

The check publishes the next version of the aggregate ops:slice-9-probe:
a note under notes/ (low risk) must become a commit with its Event-Id
trailer in the truth repository; then a change the agent marks
approval_required must stay pending with no commit, and is rejected after.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ops.errors import OpsError
from ops.slices.base import Check, Target

NUMBER = 9
TITLE = "Git reconciliation loop"
REQUIRES: tuple[int, ...] = (8,)
SERVICES: tuple[str, ...] = ("observer",)
FILES: tuple[str, ...] = ()
DATABASES: tuple[str, ...] = ()
AGGREGATE = "ops:slice-9-probe"
RESOURCE = "/notes/ops-slice-9-probe.md"


def verify(target: Target) -> list[Check]:
    if target.settings is None:
        return [Check("reconciliation", False, "no project settings to reach Redis: run it as `make slice-9`")]
    from ops.events.context import events_config
    from ops.events.probe import probe_event, wait_for_change
    from ops.events.publisher import Publisher

    try:
        config = events_config(target.settings)
        observer = config.observer()
        publisher = Publisher(observer.client, config.streams)
        version = publisher.current_version(AGGREGATE)
        applied = observer.applied_version(AGGREGATE)
        if applied != version:  # an earlier probe still held: settle it so this one is not a mismatch
            for cr in observer.store.list("pending"):
                if cr.event["aggregate_id"] == AGGREGATE:
                    observer.store.decide(cr.id, False, "ops-slice-check", "superseded probe")
            observer.client.hset(observer.applied_key, AGGREGATE, version)
        low = probe_event(AGGREGATE, version + 1, RESOURCE, content=f"probe at {datetime.now(UTC).isoformat()}")
        publisher.publish(low)
        done = wait_for_change(observer.store, low["event_id"], lambda c: c.status in ("applied", "rejected"), 30)
        commit = done.commit if done else ""
        in_git = bool(commit) and observer.reconciler.committed(low["event_id"]) == commit
        seen = f"{done.status}: commit {commit[:12]} ({done.reason})" if done else "not applied within 30 s"
        checks = [Check("low-risk change committed", done is not None and done.status == "applied" and in_git, seen)]
        high = probe_event(AGGREGATE, version + 2, RESOURCE, approval_required=True, content="needs a human")
        publisher.publish(high)
        held = wait_for_change(observer.store, high["event_id"], lambda c: c.status == "pending")
        checks.append(Check("high-risk change waits for approval", held is not None and not held.commit
                            and not observer.reconciler.committed(high["event_id"]),
                            held.reason if held else "no change request within 15 s"))  # fmt: skip
        if held is not None:
            observer.store.decide(held.id, False, "ops-slice-check", "probe")
            observer.client.hset(observer.applied_key, AGGREGATE, version + 2)  # the probe's rejected step is settled
    except OpsError as exc:
        return [Check("reconciliation", False, str(exc))]
    return checks
