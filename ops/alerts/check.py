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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ops.alerts import rules as rule
from ops.alerts.state import (
    AlertNotice,
    Condition,
    Observations,
    State,
    Thresholds,
    expired,
    load,
    locked,
    queue,
    save,
    step,
)
from ops.config import Settings
from ops.errors import ConfigError, OpsError
from ops.notify import Notice, NotifyConfig
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


def notifiers(settings: Settings, problems: list[str]) -> NotifyConfig:
    """Given Settings, return the alert notifiers' configuration; a malformed one is left out and named in problems,
    so a typo in the SMTP settings never silences Telegram (or the log)."""
    try:
        email = settings.smtp
    except ConfigError as exc:
        email = None
        problems.append(f"e-mail is off: {exc}")
    try:
        telegram = settings.alert_telegram
    except ConfigError as exc:
        telegram = None
        problems.append(f"Telegram is off: {exc}")
    return NotifyConfig(email=email, telegram=telegram)


def _bucket(settings: Settings, sources: Sources, state: State, now: datetime, limits: Thresholds,
            problems: list[str]) -> tuple[list[Condition], dict[str, Any]]:  # fmt: skip
    """The backup and drill conditions, from the cache when it is younger than BUCKET_EVERY; and the cache to keep."""
    cached = state.cache.get("bucket") or {}
    at = cached.get("at")
    if at and now - datetime.fromisoformat(at) < rule.BUCKET_EVERY:
        return [Condition(**{**c, "channels": tuple(c["channels"])}) for c in cached["conditions"]], cached
    if not settings.effective_env.get("OPS_BACKUP_BUCKET", "").strip():
        problems.append("backups: OPS_BACKUP_BUCKET is empty, so there are no backups to check (slice 10 sets them up)")
        return [], {}
    failing_since = None
    try:
        conditions = rule.bucket_conditions(sources.bucket(settings), now, limits)
    except OpsError as exc:
        failing_since = datetime.fromisoformat(cached["failing_since"]) if cached.get("failing_since") else now
        conditions = rule.unknown_bucket(str(exc), limits, failing_since, now)
        problems.append(f"backups: {exc}")
    keep = {
        "at": now.isoformat(),
        "failing_since": failing_since.isoformat() if failing_since else None,
        "conditions": [dataclasses.asdict(c) for c in conditions],
    }
    return conditions, keep


def observe(
    settings: Settings, rules: tuple[str, ...], limits: Thresholds, sources: Sources, state: State, now: datetime,
    problems: list[str],
) -> tuple[Observations, dict[str, Any]]:  # fmt: skip
    """Read the rules named in rules; return the observations and the state's new cache. Never raise: what cannot be
    read is named in problems and left unknown."""
    conditions: list[Condition] = []
    families: set[str] = set()
    cache = dict(state.cache)
    memory, top = None, ""
    if "memory" in rules:
        try:
            memory = rule.memory_percent(sources.meminfo)
            top = sources.containers(settings) if memory > limits.memory_percent else ""
        except OpsError as exc:
            problems.append(f"memory: {exc}")
    if "disk" in rules:
        try:
            paths = settings.alert_disk_paths if sources.disk_paths is None else sources.disk_paths
            conditions += rule.disk_conditions(paths, limits)
            families.add("disk")
        except ConfigError as exc:
            problems.append(f"disk: {exc}")
    health = None
    if "health" in rules:
        try:
            report = sources.health(settings)
            health = tuple((r.name, r.ok, r.detail) for r in report.results if not getattr(r, "skipped", False))
        except (OpsError, ImportError) as exc:
            problems.append(f"health: {exc}")
    if "spend" in rules:
        from ops.cost import budgets

        try:
            budget = budgets(settings)
        except ConfigError as exc:
            problems.append(f"spend: {exc}")
        else:
            try:
                spend: Spend | None = sources.spend(settings)
                problem = ""
            except OpsError as exc:
                spend, problem = None, str(exc)
                problems.append(f"spend: {exc}")
            conditions += rule.spend_conditions(spend, budget, limits, problem)
            families.add("spend")
    if "backup" in rules:
        found, kept = _bucket(settings, sources, state, now, limits, problems)
        conditions += found
        if kept:
            cache["bucket"] = kept
            families |= {"backup", "drill"}
        else:
            cache.pop("bucket", None)
    return Observations(tuple(conditions), frozenset(families), memory, top, health), cache


def _without(state: State, ident: str) -> State:
    return replace(state, outbox=tuple(o for o in state.outbox if o.id != ident))


def _updated(state: State, ident: str, **changes: Any) -> State:
    return replace(state, outbox=tuple(replace(o, **changes) if o.id == ident else o for o in state.outbox))


def deliver(path: Path, state: State, config: NotifyConfig, send: Sender, now: datetime, report: CheckReport) -> State:
    """Send the outbox in order, saving ``sending`` before each send and removing the entry after it; return the state.

    A failed send keeps its entry (and the later ones of its notifier, in order) for the next check.
    """
    blocked: set[str] = set()
    configured = config.configured()
    for entry in state.outbox:
        label = f"{entry.channel}: {entry.subject}"
        if expired(entry, now) or entry.channel not in configured:
            why = "no notifier took it in 24 h" if entry.channel in configured else f"{entry.channel} is no longer configured"
            state = _without(state, entry.id)
            save(path, state)
            report.dropped.append(f"{label} ({why}; last error: {entry.error or 'none'})")
            continue
        if entry.channel in blocked:
            continue
        state = _updated(state, entry.id, status="sending", attempts=entry.attempts + 1)
        save(path, state)
        try:
            send(entry.channel, config, entry.notice())
        except Exception as exc:
            state = _updated(state, entry.id, status="pending", attempts=entry.attempts + 1, error=str(exc)[:500])
            save(path, state)
            report.failed.append(f"{label}: {exc}")
            blocked.add(entry.channel)
            continue
        state = _without(state, entry.id)
        save(path, state)
        report.sent.append(label)
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
    nothing. Raise OpsError if another check holds the state's lock, ConfigError if the state cannot be read or
    written (another user's: the cron job runs as root).
    """
    rules = rules or rule.RULES
    limits = thresholds or Thresholds()
    sources = sources or Sources()
    path = state_file or settings.alerts_state_file
    report = CheckReport(dry_run=dry_run)
    config = notifiers(settings, report.problems)
    report.notifiers = tuple(n for n in config.configured() if n != "ping")
    if dry_run:
        state, note = load(path) if path.exists() else (State(), "")
        return _checked(settings, rules, limits, sources, state, now, note, report)[1]
    with locked(path):
        state, note = load(path)
        state, report = _checked(settings, rules, limits, sources, state, now, note, report)
        report.notices = [replace(n, title=tag + n.title) for n in report.notices]
        moment = now or datetime.now(UTC)
        state = queue(state, report.notices, report.notifiers, moment)
        save(path, state)
        deliver(path, state, config, sources.send, moment, report)
    return report


def _checked(
    settings: Settings, rules: tuple[str, ...], limits: Thresholds, sources: Sources, state: State, now: datetime | None,
    note: str, report: CheckReport,
) -> tuple[State, CheckReport]:  # fmt: skip
    moment = now or datetime.now(UTC)
    if note:
        report.problems.append(note)
    observations, cache = observe(settings, rules, limits, sources, state, moment, report.problems)
    state, notices, conditions = step(state, observations, moment, limits)
    seen = set(state.cache.get("problems") or [])
    report.new_problems = [p for p in report.problems if p not in seen]
    state = replace(state, cache={**cache, "problems": report.problems})
    report.conditions, report.notices, report.firing = conditions, notices, sorted(state.alerts)
    return state, report
