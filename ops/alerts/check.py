"""`ops alerts check`: read every rule, step the alerts' state, and send what changed (cron, every minute).

One check: take the state's lock (a check still running makes the next one
stop at once), read the rules (ops.alerts.rules), step the state
(ops.alerts.state.step: fire once, repeat hourly, resolve once), queue the
notices in the state's outbox, save it, then send the outbox entry by entry
(``sending`` saved before each send, the entry removed after it). A notifier
that fails keeps its entries for the next check, in order; one that fails
for a day loses them, said in the report. Spend alerts go by e-mail only (and
the log); the others through every configured notifier.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ops.alerts import rules as rule
from ops.alerts.state import (
    AlertNotice,
    Condition,
    Observations,
    State,
    Thresholds,
    cached_condition,
    expired,
    load,
    locked,
    queue,
    save,
    step,
)
from ops.config import Settings
from ops.errors import ConfigError, OpsError, ServiceError
from ops.notify import Notice, NotifyConfig, PermanentNotifyError
from ops.notify import send as notify_send

if TYPE_CHECKING:  # not imported on every check: the backup stack is slow to import
    from ops.backup.context import BackupContext
    from ops.cost import Spend


class ProbeLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def detail(self) -> str: ...


class HealthLike(Protocol):
    @property
    def results(self) -> Sequence[ProbeLike]: ...


HealthFn = Callable[[Settings], HealthLike]
Sender = Callable[[str, NotifyConfig, Notice], None]


def run_health(settings: Settings) -> HealthLike:
    """ops.health's probes of every service (3 s at most, in parallel)."""
    from ops.health import run_health as probe_all

    return probe_all(settings, timeout=3.0)


def largest_containers(settings: Settings) -> str:
    return rule.largest_containers(settings)


def read_spend(settings: Settings) -> Spend:
    from ops.cost import read_spend as spend

    return spend(settings)


def open_bucket(settings: Settings) -> BackupContext:
    from ops.backup.context import backup_context

    return backup_context(settings)


@dataclass(frozen=True)
class Sources:
    """Where a check reads and sends; tests replace what cannot run here (the stack's health, a provider's spend)."""

    health: HealthFn = run_health
    meminfo: Path = Path("/proc/meminfo")
    containers: Callable[[Settings], str] = largest_containers  # asked only when memory is above the line
    spend: Callable[[Settings], Spend] = read_spend
    bucket: Callable[[Settings], BackupContext] = open_bucket
    send: Sender = notify_send
    disk_paths: tuple[Path, ...] | None = None  # None: OPS_ALERT_DISK_PATHS; slice 11's drill: its scratch filesystem


@dataclass
class CheckReport:
    conditions: list[Condition] = field(default_factory=list)
    firing: list[str] = field(default_factory=list)  # keys of the alerts firing after this check
    notices: list[AlertNotice] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # kept for the next check
    dropped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be read or configured
    new_problems: list[str] = field(default_factory=list)  # those the previous check did not have
    notifiers: tuple[str, ...] = ()
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.firing

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "firing": self.firing,
            "notifiers": list(self.notifiers),
            "conditions": [{**dataclasses.asdict(c), "firing": c.key in self.firing} for c in self.conditions],
            "notices": [{"kind": n.kind, "key": n.key, "title": n.title} for n in self.notices],
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "problems": self.problems,
        }

    def lines(self, quiet: bool = False) -> list[str]:
        """Return the report as text: every rule's state (unless quiet), then what was sent, failed or dropped, and
        the problems. Quiet (cron's log, every minute): only what happened, and a problem only when it is new."""
        out = []
        if not quiet:
            for c in self.conditions:
                state = "FIRING" if c.key in self.firing else "unknown" if c.active is None else "clear"
                out.append(f"{state:<8}{c.title}: {c.detail}")
        out += [f"sent     {line}" for line in self.sent]
        out += [f"FAILED   {line} (kept for the next check)" for line in self.failed]
        out += [f"DROPPED  {line}" for line in self.dropped]
        out += [f"problem  {line}" for line in (self.new_problems if quiet else self.problems)]
        if self.dry_run and not quiet:
            out.append("dry run: nothing was sent or saved")
        if not quiet:
            out.append(f"{'FIRING: ' + ', '.join(self.firing) if self.firing else 'OK: nothing firing'}"
                       f" (notifiers: {', '.join(self.notifiers)})")  # fmt: skip
        return out


OFF = {"email": "e-mail is off", "telegram": "Telegram is off"}  # slice 11's notifier checks read these words
BUCKET_DEADLINE = 20.0  # seconds the bucket's listing may take: cron's `timeout 50` must leave time to save and send
UNREADABLE_FOR = timedelta(hours=1)  # a source unreadable this long fires (a blip does not)


def notifiers(settings: Settings, problems: list[str], off: dict[str, str] | None = None) -> NotifyConfig:
    """Given Settings, return the alert notifiers' configuration; a malformed one is left out, named in problems and
    in off (name: why), so a typo in the SMTP settings never silences Telegram (or the log)."""
    off = {} if off is None else off
    try:
        email = settings.smtp
    except ConfigError as exc:
        email, off["email"] = None, str(exc)
        problems.append(f"{OFF['email']}: {exc}")
    try:
        telegram = settings.alert_telegram
    except ConfigError as exc:
        telegram, off["telegram"] = None, str(exc)
        problems.append(f"{OFF['telegram']}: {exc}")
    return NotifyConfig(email=email, telegram=telegram)


def _time(raw: Any) -> datetime | None:
    return datetime.fromisoformat(raw) if isinstance(raw, str) and raw else None


def _deadline(read: Callable[[], list[Condition]], seconds: float) -> list[Condition]:
    """Run read in a daemon thread; return its conditions. Raise what it raises, ServiceError if it takes longer than
    seconds (the thread is left behind: the check's process ends soon after, and it with it)."""
    result: list[list[Condition]] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(read())
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=run, name="alerts-bucket", daemon=True)
    thread.start()
    thread.join(seconds)
    if error:
        raise error[0]
    if not result:
        raise ServiceError(f"the backup bucket did not answer within {seconds:g} s")
    return result[0]


def _bucket(settings: Settings, sources: Sources, state: State, now: datetime, limits: Thresholds,
            problems: list[str], mark: Callable[[dict[str, Any]], None]) -> tuple[list[Condition], dict[str, Any]]:  # fmt: skip
    """The backup and drill conditions, from the cache when it is younger than BUCKET_EVERY; and the cache to keep.

    Before a read, mark is given the cache with the time it began ("tried"), to be saved: a check killed while the
    bucket hangs is then not repeated every minute, and the time it has been failing is kept.
    """
    if not settings.effective_env.get("OPS_BACKUP_BUCKET", "").strip():
        problems.append("backups: OPS_BACKUP_BUCKET is empty, so there are no backups to check (slice 10 sets them up)")
        return [], {}
    cached = state.cache.get("bucket") or {}
    at, tried = _time(cached.get("at")), _time(cached.get("tried"))
    if at and now - at < rule.BUCKET_EVERY and not (tried and tried > at):
        return [cached_condition(c) for c in cached["conditions"]], cached
    failing_since = _time(cached.get("failing_since"))
    if tried and (at is None or tried > at) and now - tried < rule.BUCKET_EVERY:
        problem = f"the bucket's read begun at {tried:%H:%M} UTC did not finish (the check was stopped)"
        problems.append(f"backups: {problem}")
        failing_since = failing_since or tried
        return rule.unknown_bucket(problem, limits, failing_since, now), {**cached, "failing_since": failing_since.isoformat()}
    mark({**cached, "tried": now.isoformat()})
    try:
        conditions = _deadline(lambda: rule.bucket_conditions(sources.bucket(settings), now, limits), BUCKET_DEADLINE)
        failing_since = None
    except Exception as exc:
        failing_since = failing_since or now
        why = str(exc) if isinstance(exc, OpsError) else f"{type(exc).__name__}: {exc}"
        conditions = rule.unknown_bucket(why, limits, failing_since, now)
        problems.append(f"backups: {why}")
    keep = {
        "at": now.isoformat(),
        "failing_since": failing_since.isoformat() if failing_since else None,
        "conditions": [dataclasses.asdict(c) for c in conditions],
    }
    return conditions, keep


def _guarded(name: str, problems: list[str], read: Callable[[], Any], default: Any = None) -> Any:
    """Return read(); if it raises, name the rule and the error in problems and return default."""
    try:
        return read()
    except OpsError as exc:
        problems.append(f"{name}: {exc}")
    except Exception as exc:  # a bug or the machine (no thread left): the other rules still run
        problems.append(f"{name}: the rule failed ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})")
    return default


def _spend(settings: Settings, sources: Sources, limits: Thresholds, cache: dict[str, Any], now: datetime,
           problems: list[str]) -> list[Condition]:  # fmt: skip
    """The spend conditions, and whether the spend has been unreadable for an hour (cache["spend_failing_since"])."""
    from ops.cost import budgets

    budget = budgets(settings)
    try:
        spend: Spend | None = sources.spend(settings)
        problem = ""
    except Exception as exc:
        spend = None
        problem = str(exc) if isinstance(exc, OpsError) else f"{type(exc).__name__}: {exc}"
        problems.append(f"spend: {problem}")
    conditions = rule.spend_conditions(spend, budget, limits, problem)
    since = (_time(cache.get("spend_failing_since")) or now) if spend is None else None
    cache["spend_failing_since"] = since.isoformat() if since else None
    long = since is not None and now - since > UNREADABLE_FOR
    detail = f"the spend cannot be read since {since:%Y-%m-%d %H:%M} UTC: {problem}" if since else "the spend is read"
    conditions.append(Condition("spend:unreadable", "the spend cannot be read", long, detail))
    return conditions


def observe(
    settings: Settings, rules: tuple[str, ...], limits: Thresholds, sources: Sources, state: State, now: datetime,
    problems: list[str], mark: Callable[[dict[str, Any]], None] = lambda _: None,
) -> tuple[Observations, dict[str, Any]]:  # fmt: skip
    """Read the rules named in rules; return the observations and the state's new cache. Never raise: what cannot be
    read (whatever the error) is named in problems and left unknown. mark saves the bucket's cache before its read."""
    conditions: list[Condition] = []
    families: set[str] = set()
    cache = dict(state.cache)
    memory, top = None, ""
    if "memory" in rules:
        memory = _guarded("memory", problems, lambda: rule.memory_percent(sources.meminfo))
        if memory is not None and memory > limits.memory_percent:
            top = _guarded("memory", problems, lambda: sources.containers(settings), "")
    if "disk" in rules:

        def disks() -> list[Condition]:
            paths = settings.alert_disk_paths if sources.disk_paths is None else sources.disk_paths
            return rule.disk_conditions(paths, limits)

        found = _guarded("disk", problems, disks)
        if found is not None:
            conditions += found
            families.add("disk")
    health = None
    if "health" in rules:

        def results() -> tuple[tuple[str, bool, str], ...]:
            report = sources.health(settings)
            return tuple((r.name, r.ok, r.detail) for r in report.results if not getattr(r, "skipped", False))

        health = _guarded("health", problems, results)
    if "spend" in rules:
        found = _guarded("spend", problems, lambda: _spend(settings, sources, limits, cache, now, problems))
        if found is not None:
            conditions += found
            families.add("spend")
    if "backup" in rules:
        got = _guarded("backups", problems, lambda: _bucket(settings, sources, state, now, limits, problems, mark))
        found, kept = got if got is not None else (None, None)
        if found is not None:
            conditions += found
            families |= {"backup", "drill"}  # with no bucket any more, a firing backup alert is resolved
        if kept:
            cache["bucket"] = kept
        elif kept is not None:
            cache.pop("bucket", None)
    return Observations(tuple(conditions), frozenset(families), memory, top, health), cache


def _without(state: State, ident: str) -> State:
    return replace(state, outbox=tuple(o for o in state.outbox if o.id != ident))


def _updated(state: State, ident: str, **changes: Any) -> State:
    return replace(state, outbox=tuple(replace(o, **changes) if o.id == ident else o for o in state.outbox))


def deliver(path: Path, state: State, config: NotifyConfig, send: Sender, now: datetime, report: CheckReport,
            off: dict[str, str] | None = None) -> State:  # fmt: skip
    """Send the outbox in order, saving ``sending`` before each send and removing the entry after it; return the state.

    A failed send keeps its entry (and the later ones of its notifier, in order) for the next check; a notifier that
    is off (in off: set but malformed) keeps its entries until it is fixed. A notice its service refused for good
    (PermanentNotifyError) is dropped, named in problems and said on the other notifiers.
    """
    blocked: set[str] = set(off or {})
    configured = config.configured()
    refused: list[AlertNotice] = []
    for entry in state.outbox:
        label = f"{entry.channel}: {entry.subject}"
        if entry.channel in blocked:
            continue
        if expired(entry, now) or entry.channel not in configured:
            why = "no notifier took it in 24 h" if entry.channel in configured else f"{entry.channel} is no longer configured"
            state = _without(state, entry.id)
            save(path, state)
            report.dropped.append(f"{label} ({why}; last error: {entry.error or 'none'})")
            continue
        state = _updated(state, entry.id, status="sending", attempts=entry.attempts + 1)
        save(path, state)
        try:
            send(entry.channel, config, entry.notice())
        except PermanentNotifyError as exc:
            state = _without(state, entry.id)
            save(path, state)
            report.dropped.append(f"{label} (refused for good: {exc})")
            report.problems.append(f"{entry.channel} refused a notice for good: {exc}")
            detail = f"{entry.channel} refused this notice for good, it was dropped: {entry.subject}\n{exc}"
            others = tuple(c for c in configured if c not in (entry.channel, "ping"))
            refused.append(AlertNotice("notice", f"refused:{entry.id}", f"{entry.channel} refused a notice", detail,
                                       now, now, others))  # fmt: skip
            continue
        except Exception as exc:
            state = _updated(state, entry.id, status="pending", attempts=entry.attempts + 1, error=str(exc)[:500])
            save(path, state)
            report.failed.append(f"{label}: {exc}")
            blocked.add(entry.channel)
            continue
        state = _without(state, entry.id)
        save(path, state)
        report.sent.append(label)
    if refused:  # sent by the next check, on the other notifiers (and the log)
        state = queue(state, refused, tuple(c for c in configured if c != "ping"), now)
        save(path, state)
    return state


def run_check(
    settings: Settings,
    *,
    rules: tuple[str, ...] = (),
    thresholds: Thresholds | None = None,
    state_file: Path | None = None,
    sources: Sources | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    tag: str = "",
) -> CheckReport:
    """Given Settings, check the rules named in rules (all when empty), step the alerts' state, send its notices;
    return the report.

    thresholds and state_file replace the defaults (slice 11's drills); sources what is read and how it is sent
    (tests, the drills); tag is put before each notice's title ("(drill) "). dry_run: read the state, send and save
    nothing (a malformed state is left where it is). Raise OpsError if another check holds the state's lock,
    ConfigError if the state cannot be read or written (another user's: the cron job runs as root).
    """
    rules = rules or rule.RULES
    limits = thresholds or Thresholds()
    sources = sources or Sources()
    path = state_file or settings.alerts_state_file
    report = CheckReport(dry_run=dry_run)
    off: dict[str, str] = {}
    config = notifiers(settings, report.problems, off)
    report.notifiers = tuple(n for n in config.configured() if n != "ping")
    if dry_run:
        state, note = load(path, dry_run=True)
        return _checked(settings, rules, limits, sources, state, now, note, report)[1]
    with locked(path):
        state, note = load(path)
        moment = now or datetime.now(UTC)

        def mark(bucket: dict[str, Any]) -> None:  # the bucket's read begins: saved, in case cron kills the check
            save(path, replace(state, cache={**state.cache, "bucket": bucket}))

        state, report = _checked(settings, rules, limits, sources, state, now, note, report, mark)
        report.notices = [replace(n, title=tag + n.title) for n in report.notices]
        report.notices += _check_notices(note, off, report, moment)
        state = queue(state, report.notices, report.notifiers, moment)
        save(path, state)
        deliver(path, state, config, sources.send, moment, report, off)
    return report


def _check_notices(note: str, off: dict[str, str], report: CheckReport, now: datetime) -> list[AlertNotice]:
    """The notices about the check itself: its state was reset; a notifier went off (once, when it appears)."""
    notices = []
    if note:
        notices.append(AlertNotice("notice", "state", "the alerts' state was reset", note, now, now))
    for name, why in off.items():
        if f"{OFF[name]}: {why}" in report.new_problems:
            others = tuple(n for n in report.notifiers if n != name)
            notices.append(AlertNotice("notice", f"off:{name}", f"notifier {name} is off", f"{OFF[name]}: {why}",
                                       now, now, others))  # fmt: skip
    return notices


def _checked(
    settings: Settings, rules: tuple[str, ...], limits: Thresholds, sources: Sources, state: State, now: datetime | None,
    note: str, report: CheckReport, mark: Callable[[dict[str, Any]], None] = lambda _: None,
) -> tuple[State, CheckReport]:  # fmt: skip
    moment = now or datetime.now(UTC)
    if note:
        report.problems.append(note)
    observations, cache = observe(settings, rules, limits, sources, state, moment, report.problems, mark)
    state, notices, conditions = step(state, observations, moment, limits)
    seen = set(state.cache.get("problems") or [])
    report.new_problems = [p for p in report.problems if p not in seen]
    state = replace(state, cache={**cache, "problems": report.problems})
    report.conditions, report.notices, report.firing = conditions, notices, sorted(state.alerts)
    return state, report
