"""ops.alerts.state.step: the alerts' transitions, one table of checks a minute apart per case.

Each case is a list of checks: (minute, what the check saw, the notices it must give). What the check saw is
a dict of condition key -> active (True, False, None: could not tell), or ("memory", percent), or
("health", {service: ok}). Notices are (kind, key).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ops.alerts.state import Condition, Observations, State, Thresholds, queue, step

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
Seen = dict[str, bool | None] | tuple[str, Any]
Check = tuple[int, Seen, list[tuple[str, str]]]


def observations(seen: Seen) -> Observations:
    if isinstance(seen, tuple) and seen[0] == "memory":
        return Observations(memory_percent=float(seen[1]))
    if isinstance(seen, tuple) and seen[0] == "health":
        return Observations(health=tuple((name, ok, "probe said so") for name, ok in seen[1].items()))
    assert isinstance(seen, dict)
    conditions = tuple(Condition(key, f"title of {key}", active, "detail") for key, active in seen.items())
    return Observations(conditions, frozenset(c.family for c in conditions))


def high(minutes: range, percent: float = 95.0) -> list[Check]:
    return [(m, ("memory", percent), []) for m in minutes]


CASES: dict[str, list[Check]] = {
    "fires once, repeats hourly while it lasts": [
        (0, {"disk:/": True}, [("firing", "disk:/")]),
        (1, {"disk:/": True}, []),
        (59, {"disk:/": True}, []),
        (60, {"disk:/": True}, [("repeat", "disk:/")]),
        (61, {"disk:/": True}, []),
        (120, {"disk:/": True}, [("repeat", "disk:/")]),
    ],
    "resolves once when it clears": [
        (0, {"disk:/": True}, [("firing", "disk:/")]),
        (1, {"disk:/": False}, [("resolved", "disk:/")]),
        (2, {"disk:/": False}, []),
    ],
    "what cannot be told changes nothing": [
        (0, {"spend:day": True}, [("firing", "spend:day")]),
        (1, {"spend:day": None}, []),
        (61, {"spend:day": None}, []),  # no repeat either: nobody knows it still holds
        (62, {"spend:day": False}, [("resolved", "spend:day")]),
        (63, {"spend:day": None}, []),
    ],
    "an unknown never fires": [(0, {"backup": None}, []), (1, {"backup": False}, [])],
    "two alerts of one rule are separate": [
        (0, {"disk:/": True, "disk:/var/lib/docker": False}, [("firing", "disk:/")]),
        (1, {"disk:/": True, "disk:/var/lib/docker": True}, [("firing", "disk:/var/lib/docker")]),
        (2, {"disk:/": False, "disk:/var/lib/docker": True}, [("resolved", "disk:/")]),
    ],
    "an alert its rule no longer covers is resolved": [
        (0, {"disk:/": True, "disk:/data": True}, [("firing", "disk:/"), ("firing", "disk:/data")]),
        (1, {"disk:/": True}, [("resolved", "disk:/data")]),
    ],
    "an alert of a rule not checked this time stays": [
        (0, {"spend:day": True}, [("firing", "spend:day")]),
        (1, {"disk:/": False}, []),
        (2, {"spend:day": True}, []),
    ],
    "memory above 90% for 5 minutes fires at the fifth minute": [
        *high(range(5)),
        (5, ("memory", 95), [("firing", "memory")]),
        (6, ("memory", 95), []),
        (7, ("memory", 50), [("resolved", "memory")]),
    ],
    "a dip under 90% starts the 5 minutes again": [
        *high(range(3)),
        (3, ("memory", 80), []),
        *high(range(4, 9)),
        (9, ("memory", 95), [("firing", "memory")]),
    ],
    "exactly 90% is not above it": [*high(range(8), percent=90.0)],
    "after a gap in the samples (cron stopped) the 5 minutes start again": [
        *high(range(3)),
        *high(range(20, 25)),
        (25, ("memory", 96), [("firing", "memory")]),
    ],
    "a service fails its health check 3 times in a row": [
        (0, ("health", {"litellm": False, "redis": True}), []),
        (1, ("health", {"litellm": False, "redis": True}), []),
        (2, ("health", {"litellm": False, "redis": True}), [("firing", "health:litellm")]),
        (3, ("health", {"litellm": False, "redis": True}), []),
        (4, ("health", {"litellm": True, "redis": True}), [("resolved", "health:litellm")]),
    ],
    "failures not in a row never fire": [
        (0, ("health", {"n8n": False}), []),
        (1, ("health", {"n8n": False}), []),
        (2, ("health", {"n8n": True}), []),
        (3, ("health", {"n8n": False}), []),
        (4, ("health", {"n8n": False}), []),
    ],
    "the observer's heartbeat is its own rule, stale at 2 checks": [
        (0, ("health", {"observer": False}), []),
        (1, ("health", {"observer": False}), [("firing", "heartbeat:observer")]),
        (2, ("health", {"observer": True}), [("resolved", "heartbeat:observer")]),
    ],
    "a service no longer probed (its profile turned off) is resolved": [
        (0, ("health", {"qdrant": False}), []),
        (1, ("health", {"qdrant": False}), []),
        (2, ("health", {"qdrant": False}), [("firing", "health:qdrant")]),
        (3, ("health", {}), [("resolved", "health:qdrant")]),
    ],
    "no health report (the probes could not run) keeps the count": [
        (0, ("health", {"caddy": False}), []),
        (1, ("health", {"caddy": False}), []),
        (2, {"disk:/": False}, []),
        (3, ("health", {"caddy": False}), [("firing", "health:caddy")]),
    ],
}


AT_ONCE = Thresholds(resolve_checks=1)  # CASES: resolved at the first clear check, to show the other transitions

HYSTERESIS: dict[str, list[Check]] = {  # the default: resolved after 3 clear checks in a row
    "a flapping condition fires once and stays until clear 3 checks in a row": [
        (0, {"disk:/": True}, [("firing", "disk:/")]),
        (1, {"disk:/": False}, []),
        (2, {"disk:/": True}, []),
        (3, {"disk:/": False}, []),
        (4, {"disk:/": False}, []),
        (5, {"disk:/": True}, []),
        (6, {"disk:/": False}, []),
        (7, {"disk:/": None}, []),  # unknown: neither clear nor not
        (8, {"disk:/": False}, []),
        (9, {"disk:/": False}, [("resolved", "disk:/")]),
        (10, {"disk:/": True}, [("firing", "disk:/")]),
    ],
    "a service failing 3 times then passing once fires once": [
        *[(m, ("health", {"n8n": m % 4 == 3}), [("firing", "health:n8n")] if m == 2 else []) for m in range(15)],
        (15, ("health", {"n8n": True}), []),
        (16, ("health", {"n8n": True}), []),
        (17, ("health", {"n8n": True}), [("resolved", "health:n8n")]),
    ],
    "an alert its rule no longer covers is resolved at once": [
        (0, {"disk:/": True, "disk:/data": True}, [("firing", "disk:/"), ("firing", "disk:/data")]),
        (1, {"disk:/": True}, [("resolved", "disk:/data")]),
    ],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_alert_transitions(case: str) -> None:
    state = State()
    for minute, seen, expected in CASES[case]:
        state, notices, _ = step(state, observations(seen), T0 + timedelta(minutes=minute), AT_ONCE)
        assert [(n.kind, n.key) for n in notices] == expected, f"minute {minute}"


@pytest.mark.parametrize("case", sorted(HYSTERESIS))
def test_an_alert_resolves_only_after_3_clear_checks_in_a_row(case: str) -> None:
    state = State()
    for minute, seen, expected in HYSTERESIS[case]:
        state, notices, _ = step(state, observations(seen), T0 + timedelta(minutes=minute))
        state = State.from_json(state.to_json())  # the count survives the file
        assert [(n.kind, n.key) for n in notices] == expected, f"minute {minute}"


def test_the_state_survives_its_file_between_checks() -> None:
    """A check's state written and read back (a restart between checks) gives the same next transitions."""
    state = State()
    for minute in range(3):
        state, _, _ = step(state, observations(("health", {"litellm": False})), T0 + timedelta(minutes=minute))
        state = State.from_json(state.to_json())
    state, notices, _ = step(state, observations(("health", {"litellm": False})), T0 + timedelta(minutes=61))
    assert [(n.kind, n.key) for n in notices] == []  # fired at minute 2: not an hour yet
    state = State.from_json(state.to_json())
    state, notices, _ = step(state, observations(("health", {"litellm": False})), T0 + timedelta(minutes=62))
    assert [(n.kind, n.key) for n in notices] == [("repeat", "health:litellm")]


def test_a_notice_says_what_since_when_and_how_long() -> None:
    state, _, _ = step(State(), observations({"disk:/": True}), T0)
    _, notices, _ = step(state, observations({"disk:/": False}), T0 + timedelta(minutes=95), AT_ONCE)
    notice = notices[0].notice()
    assert notice.subject == "[aistack] RESOLVED: title of disk:/"
    assert "It lasted 1 h 35 min (since 2026-11-24 08:00 UTC)" in notice.message and notice.ok


def test_spend_goes_to_email_and_the_log_only_and_a_new_repeat_replaces_a_waiting_one() -> None:
    spend = Observations((Condition("spend:day", "the day's spend above $10.00", True, "$11", ("email",)),), frozenset({"spend"}))
    disk = Observations((Condition("disk:/", "disk / above 85%", True, "91%"),), frozenset({"disk"}))
    channels = ("log", "email", "telegram")
    state, notices, _ = step(State(), spend, T0)
    state = queue(state, notices, channels, T0)
    assert [(o.channel, o.kind) for o in state.outbox] == [("log", "firing"), ("email", "firing")]
    state, notices, _ = step(state, disk, T0)
    state = queue(state, notices, channels, T0)
    assert [o.channel for o in state.outbox if o.key == "disk:/"] == ["log", "email", "telegram"]
    for hours in (1, 2):  # e-mail down for two hours: one waiting repeat, not two
        state, notices, _ = step(state, spend, T0 + timedelta(hours=hours))
        state = queue(state, notices, channels, T0 + timedelta(hours=hours))
    assert [(o.channel, o.kind) for o in state.outbox if o.key == "spend:day"] == [
        ("log", "firing"),
        ("email", "firing"),
        ("log", "repeat"),
        ("email", "repeat"),
    ]
