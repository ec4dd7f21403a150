"""The alerts' state between two checks, and the pure step from one check to the next.

``step(state, observations, now)`` returns the new state and the notices to
send: an alert fires once when its condition becomes true, repeats at most
every ``repeat_minutes`` (an hour) while it lasts, and is resolved once when
it has been clear for ``resolve_checks`` checks in a row (3: a disk hovering at the line, a service
failing but now and then, fire once, not every few minutes). A condition that could not be told this time (its source did not
answer) changes nothing. Two rules need history, kept here: memory (its
samples of the last minutes: above 90% for 5 minutes) and the health checks
(each service's consecutive failures: 3 in a row).

The state is one JSON file (mode 600), replaced atomically. Notices go
through an outbox kept in it, one entry per notifier, marked ``sending``
before a send and removed after it: a check killed mid-send (cron's
``timeout``, a reboot) finds the entry still there and sends it again, so a
crash may repeat a notice but never loses one. A check killed before it
saved the new state sends nothing and loses nothing: the next one finds the
same transitions.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ops.envfile import replace_private_file, write_private_file
from ops.errors import ConfigError, OpsError
from ops.notify import Notice

FORMAT = 1
MEMORY_KEEP = timedelta(minutes=10)  # samples kept beyond the memory window
OUTBOX_MAX_AGE = timedelta(hours=24)  # a notice no notifier took in a day is dropped (and said so)
HEARTBEAT_PROBE = "observer"  # ops.health's probe of the observer's heartbeat (ops/health/probes/observer.py)


@dataclass(frozen=True)
class Thresholds:
    """Where each rule fires (the plan's and the notes' figures) and how often a lasting alert repeats."""

    memory_percent: float = 90.0
    memory_minutes: float = 5.0
    disk_percent: float = 85.0
    health_failures: int = 3
    day_warn_usd: float | None = None  # None: 80% of the daily budget of litellm-config.yaml ($4 of $5)
    day_usd: float = 10.0
    month_usd: float = 40.0
    backup_hours: float = 26.0
    drill_days: float = 8.0
    heartbeat_failures: int = 2  # checks a minute apart without the observer's heartbeat (its TTL is 30 s)
    repeat_minutes: float = 60.0
    resolve_checks: int = 3  # a firing alert resolves once its condition has been clear this many checks in a row


@dataclass(frozen=True)
class Condition:
    """One rule's verdict this check: key names the alert ("disk:/var/lib/docker"), its family the rule ("disk")."""

    key: str
    title: str
    active: bool | None  # None: could not be told this time; the alert stays as it was
    detail: str
    channels: tuple[str, ...] = ()  # the notifiers it goes to; () every configured one

    @property
    def family(self) -> str:
        return self.key.split(":", 1)[0]


@dataclass(frozen=True)
class Observations:
    """What one check saw: the memoryless rules' conditions, memory's sample and the health checks' results.

    families: the rules evaluated this time; an alert of one of them that has no condition any more (a disk
    path dropped, a service no longer probed) is resolved. memory_percent None: memory was not sampled;
    health None: the services were not probed.
    """

    conditions: tuple[Condition, ...] = ()
    families: frozenset[str] = frozenset()
    memory_percent: float | None = None
    memory_top: str = ""  # the largest containers, read only when memory is above the line
    health: tuple[tuple[str, bool, str], ...] | None = None  # (service, ok, detail); skipped services left out


@dataclass(frozen=True)
class Alert:
    """A firing alert: since when, when it was last notified, and where it goes."""

    key: str
    title: str
    detail: str
    since: str  # ISO time
    notified: str
    channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertNotice:
    """A transition to notify: "firing", "repeat" (still firing, an hour later) or "resolved"; or "notice", about the
    check itself (its state was reset, a notifier is off)."""

    kind: str
    key: str
    title: str
    detail: str
    since: datetime
    at: datetime
    channels: tuple[str, ...] = ()

    def notice(self) -> Notice:
        """Return the notice every notifier sends: a one-line subject, then the detail and the times."""
        lasted = _duration(self.at - self.since)
        if self.kind == "notice":
            subject = f"[aistack] NOTICE: {self.title}"
            return Notice("alert", True, f"{subject}\n{self.detail}", subject)
        if self.kind == "resolved":
            subject = f"[aistack] RESOLVED: {self.title}"
            text = f"{subject}\n{self.detail}\nIt lasted {lasted} (since {self.since:%Y-%m-%d %H:%M} UTC)."
        else:
            again = f"STILL FIRING for {lasted}" if self.kind == "repeat" else "ALERT"
            subject = f"[aistack] {again}: {self.title}"
            text = f"{subject}\n{self.detail}\nSince {self.since:%Y-%m-%d %H:%M} UTC. What to do: docs/ALERTS.md ({self.key})."
        return Notice("alert", self.kind == "resolved", text, subject)


@dataclass(frozen=True)
class Outgoing:
    """One notice for one notifier, waiting in the outbox: "pending", or "sending" (a send was begun)."""

    id: str
    key: str
    kind: str
    channel: str
    subject: str
    text: str
    ok: bool
    created: str
    status: str = "pending"
    attempts: int = 0
    error: str = ""

    def notice(self) -> Notice:
        return Notice("alert", self.ok, self.text, self.subject)


@dataclass(frozen=True)
class State:
    alerts: dict[str, Alert] = field(default_factory=dict)
    memory: tuple[tuple[float, float], ...] = ()  # (Unix time, percent used), oldest first
    health: dict[str, int] = field(default_factory=dict)  # service -> consecutive failed checks
    clear: dict[str, int] = field(default_factory=dict)  # firing alert -> consecutive checks its condition was clear
    outbox: tuple[Outgoing, ...] = ()
    cache: dict[str, Any] = field(default_factory=dict)  # slow rules' last conditions (the bucket's), with their time

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> State:
        """Parse a state file's text, checking every field's type and every time. Raise ValueError if it is not one."""
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError(f"a JSON {type(raw).__name__}, not an object")
            if raw.get("format") != FORMAT:
                raise ValueError(f"format {raw.get('format')!r}, not {FORMAT}")
            alerts = {}
            for k, a in _of(raw, "alerts", dict).items():
                alert = Alert(**{**_of({"a": a}, "a", dict), "channels": tuple(a.get("channels", ()))})
                _fields(alert, ("key", "title", "detail", "since", "notified"), str)
                _times(alert.since, alert.notified)
                alerts[str(k)] = alert
            outbox = []
            for o in _of(raw, "outbox", list):
                entry = Outgoing(**_of({"o": o}, "o", dict))
                _fields(entry, ("id", "key", "kind", "channel", "subject", "text", "created", "status", "error"), str)
                _times(entry.created)
                if not isinstance(entry.ok, bool) or not isinstance(entry.attempts, int):
                    raise ValueError(f"outbox entry {entry.id}: ok or attempts malformed")
                outbox.append(entry)
            cache = dict(raw.get("cache") or {})
            bucket = cache.get("bucket")
            if bucket:
                if not isinstance(bucket, dict):
                    raise ValueError("cache.bucket is not an object")
                _times(*(bucket[k] for k in ("at", "failing_since", "tried") if bucket.get(k) is not None))
                for c in bucket.get("conditions") or []:
                    cached_condition(c)
            if not all(isinstance(p, str) for p in cache.get("problems") or []):
                raise ValueError("cache.problems is not a list of lines")
            return cls(
                alerts=alerts,
                memory=tuple((float(t), float(p)) for t, p in _of(raw, "memory", list)),
                health={str(k): int(v) for k, v in _of(raw, "health", dict).items()},
                clear={str(k): int(v) for k, v in (raw.get("clear") or {}).items()},
                outbox=tuple(outbox),
                cache=cache,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed ({type(exc).__name__}: {exc})") from exc


def _of(raw: dict[str, Any], name: str, kind: type) -> Any:
    value = raw[name]
    if not isinstance(value, kind):
        raise ValueError(f"{name} is a {type(value).__name__}, not a {kind.__name__}")
    return value


def _fields(obj: Any, names: tuple[str, ...], kind: type) -> None:
    for name in names:
        if not isinstance(getattr(obj, name), kind):
            raise ValueError(f"{type(obj).__name__}.{name} is not a {kind.__name__}")


def _times(*values: Any) -> None:
    """Raise ValueError unless every value is an ISO time with its time zone."""
    for value in values:
        if not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is None:
            raise ValueError(f"{value!r} is not an ISO time with a time zone")


def cached_condition(raw: Any) -> Condition:
    """Given a condition as the cache keeps it, return it. Raise ValueError if it is not one."""
    if not isinstance(raw, dict):
        raise ValueError("a cached condition is not an object")
    try:
        c = Condition(**{**raw, "channels": tuple(raw.get("channels") or ())})
    except TypeError as exc:
        raise ValueError(f"a cached condition is malformed: {exc}") from exc
    _fields(c, ("key", "title", "detail"), str)
    if c.active not in (True, False, None):
        raise ValueError(f"cached condition {c.key}: active is {c.active!r}")
    return c


def _duration(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} days {hours % 24} h"


def memory_condition(samples: tuple[tuple[float, float], ...], now: datetime, limits: Thresholds, top: str = "") -> Condition:
    """Given the memory samples (the newest is now's), return the memory rule's condition.

    Active when every sample of the last memory_minutes, and the one before them, is above memory_percent:
    the memory has been above the line for the whole window, as far as the samples tell. A window of 0 minutes
    (slice 11's drill): when the newest sample is above the line.
    """
    start = now.timestamp() - limits.memory_minutes * 60
    before = [p for t, p in samples if t <= start]
    inside = [p for t, p in samples if t > start]
    high = limits.memory_percent
    title = f"memory above {high:g}% for {limits.memory_minutes:.0f} minutes"
    active = bool(before) and before[-1] > high and bool(inside) and all(p > high for p in inside)
    if limits.memory_minutes <= 0:  # no window (slice 11's drill): the newest sample alone
        title, active = f"memory above {high:g}%", bool(samples) and samples[-1][1] > high
    run_start = now.timestamp()
    for t, p in reversed(samples):
        if p <= high:
            break
        run_start = t
    current = samples[-1][1] if samples else 0.0
    minutes = (now.timestamp() - run_start) / 60
    detail = f"{current:.0f}% of the VM's memory in use"
    if current > high:
        detail += f", above {high:.0f}% for {minutes:.0f} min" + (f"; largest containers: {top}" if top else "")
    return Condition("memory", title, active, detail)


def health_conditions(
    results: tuple[tuple[str, bool, str], ...], failures: dict[str, int], limits: Thresholds,
    firing: frozenset[str] = frozenset(),
) -> tuple[dict[str, int], list[Condition]]:  # fmt: skip
    """Given this check's health results, the consecutive failures so far and the alerts firing, return the new counts
    and one condition per service: active at health_failures failures in a row, and, once firing, at any failure (a
    passing check between failures does not make it clear). The observer's probe (its heartbeat in Redis) is the
    heartbeat rule instead: active at heartbeat_failures, so a restart's gap does not fire it."""
    counts = {name: 0 if ok else failures.get(name, 0) + 1 for name, ok, _ in results}
    conditions = []
    for name, ok, detail in results:
        n = counts[name]
        if name == HEARTBEAT_PROBE:
            title, key, limit = "the observer's heartbeat is stale", f"heartbeat:{name}", limits.heartbeat_failures
        else:
            title, key, limit = f"{name} failing its health check", f"health:{name}", limits.health_failures
        text = f"{name}: {detail}" if ok else f"{name} failed {n} check{'s' * (n > 1)} in a row: {detail}"
        conditions.append(Condition(key, title, n >= limit or (key in firing and not ok), text))
    return counts, conditions


def step(
    state: State, observations: Observations, now: datetime, limits: Thresholds | None = None
) -> tuple[State, list[AlertNotice], list[Condition]]:
    """Given the state, one check's observations and the time, return the new state, the notices and every condition.

    Pure: nothing is read or sent. The outbox is left as it was (the caller queues the notices).
    """
    limits = limits or Thresholds()
    conditions = list(observations.conditions)
    memory, health = state.memory, dict(state.health)
    if observations.memory_percent is not None:
        keep = now.timestamp() - limits.memory_minutes * 60 - MEMORY_KEEP.total_seconds()
        memory = (*(s for s in state.memory if keep <= s[0] < now.timestamp()), (now.timestamp(), observations.memory_percent))
        conditions.append(memory_condition(memory, now, limits, observations.memory_top))
    if observations.health is not None:
        health, found = health_conditions(observations.health, state.health, limits, frozenset(state.alerts))
        conditions += found
        observations = replace(observations, families=observations.families | {"health", "heartbeat"})
    alerts, clear = dict(state.alerts), dict(state.clear)
    notices: list[AlertNotice] = []
    at = now.isoformat()
    repeat = timedelta(minutes=limits.repeat_minutes)
    for c in conditions:
        current = alerts.get(c.key)
        if c.active is None:
            continue
        if c.active:
            clear.pop(c.key, None)
        if c.active and current is None:
            alerts[c.key] = Alert(c.key, c.title, c.detail, at, at, c.channels)
            notices.append(AlertNotice("firing", c.key, c.title, c.detail, now, now, c.channels))
        elif c.active and current is not None:
            since = datetime.fromisoformat(current.since)
            if now - datetime.fromisoformat(current.notified) >= repeat:
                alerts[c.key] = replace(current, detail=c.detail, notified=at)
                notices.append(AlertNotice("repeat", c.key, c.title, c.detail, since, now, current.channels))
            else:
                alerts[c.key] = replace(current, detail=c.detail)
        elif current is not None and clear.get(c.key, 0) + 1 < limits.resolve_checks:
            clear[c.key] = clear.get(c.key, 0) + 1  # clear, not yet long enough: a flapping alert stays firing
            alerts[c.key] = replace(current, detail=c.detail)
        elif current is not None:
            del alerts[c.key]
            clear.pop(c.key, None)
            since = datetime.fromisoformat(current.since)
            notices.append(AlertNotice("resolved", c.key, c.title, c.detail, since, now, current.channels))
    families = set(observations.families) | {c.family for c in conditions}
    seen = {c.key for c in conditions}
    for key, alert in list(alerts.items()):
        if key not in seen and key.split(":", 1)[0] in families:
            del alerts[key]
            clear.pop(key, None)
            detail = "no longer checked (the rule no longer covers it)"
            since = datetime.fromisoformat(alert.since)
            notices.append(AlertNotice("resolved", key, alert.title, detail, since, now, alert.channels))
    clear = {k: n for k, n in clear.items() if k in alerts}
    return replace(state, alerts=alerts, memory=memory, health=health, clear=clear), notices, conditions


def queue(state: State, notices: list[AlertNotice], channels: tuple[str, ...], now: datetime) -> State:
    """Given the state, notices and the notifiers configured, return the state with one outbox entry per notice and
    notifier (a notice's own channels, when it has some, among those). A new "repeat" replaces a waiting one."""
    outbox = list(state.outbox)
    for n in notices:
        notice = n.notice()
        for channel in channels:
            if n.channels and channel not in n.channels and channel != "log":
                continue
            if n.kind == "repeat":
                outbox = [o for o in outbox if not (o.key == n.key and o.channel == channel and o.kind == "repeat")]
            ident = uuid.uuid4().hex[:12]
            outbox.append(Outgoing(ident, n.key, n.kind, channel, notice.subject, notice.message, notice.ok, now.isoformat()))
    return replace(state, outbox=tuple(outbox))


def expired(outgoing: Outgoing, now: datetime) -> bool:
    """True if no notifier took outgoing within OUTBOX_MAX_AGE: it is dropped."""
    return now - datetime.fromisoformat(outgoing.created) > OUTBOX_MAX_AGE


# --- the state file ---


def load(path: Path, dry_run: bool = False) -> tuple[State, str]:
    """Given the state file, return its state and "" (an empty state when there is none yet).

    A file that is not a state (torn, not UTF-8, a field of the wrong type) is moved aside (``.corrupt-<time>``)
    and an empty state returned with a note saying so: the alerts fire again rather than never. dry_run renames
    nothing (the note says a real check will). Raise ConfigError if the file cannot be read (its owner is another).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return State(), ""
    except OSError as exc:
        raise ConfigError(f"cannot read the alerts' state {path}: {exc.strerror} (run it as the cron job does, as root)") from exc
    try:
        return State.from_json(data.decode("utf-8")), ""
    except ValueError as exc:  # UnicodeDecodeError and json's errors are ValueErrors
        why = " ".join(str(exc).split())[:200]
        if dry_run:
            return State(), f"the alerts' state {path} could not be read ({why}); a check without --dry-run resets it"
        aside = path.with_name(f"{path.name}.corrupt-{datetime.now(UTC):%Y%m%dT%H%M%S}")
        try:
            path.rename(aside)
        except OSError as err:
            raise ConfigError(f"the alerts' state {path} is malformed ({why}) and cannot be moved aside: {err.strerror}") from err
        return State(), f"the alerts' state {path} could not be read ({why}); moved to {aside.name}, starting afresh"


def save(path: Path, state: State) -> None:
    """Write state to path atomically (mode 600). Raise ConfigError if its directory cannot be written."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.exists():
            replace_private_file(path, state.to_json())
        else:
            write_private_file(path, state.to_json())
    except OSError as exc:
        raise ConfigError(
            f"cannot write the alerts' state {path}: {exc.strerror}; run it as the cron job does (as root), or set "
            "OPS_ALERTS_STATE to a file you can write"
        ) from exc


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the state's lock (``<state>.lock``) while the block runs. Raise OpsError at once if another check holds it."""
    lock = path.with_name(path.name + ".lock")
    try:
        lock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"cannot open the alerts' lock {lock}: {exc.strerror} (run it as root, or set OPS_ALERTS_STATE)"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OpsError(f"another `ops alerts check` is running (it holds {lock}); this one did nothing") from None
        yield
    finally:
        os.close(fd)
