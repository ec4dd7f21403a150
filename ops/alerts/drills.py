"""Slice 11's drills: each alert fired on purpose on the running stack, seen delivered, then resolved.

Every drill runs the real check (ops.alerts.check.run_check: the rule, the state machine, the outbox, the
notifiers) with a state file of its own in a temporary directory, so the cron job's alerts, memory samples and
failure counts are untouched, and its notices say "(drill)" in their title. Each drill is one Check named after
its alert, saying whether it fired, was delivered (by every configured notifier the alert goes to) and resolved
(and that was delivered too).

- memory: a hog: a container of a stack image (redis's, else postgres's: it runs anyway) writing a fixed amount
  into a tmpfs of that size (a sixteenth of the memory, 256 MB to 1 GB: 256 MB on the 4 GB VM) under a memory limit
  a little above it, never more than the memory available allows. Tmpfs pages cannot be reclaimed without swap,
  so MemAvailable falls by the hog. The rule is judged with a line between the memory in use before and with the
  hog (memory_line) and a window of 0 minutes (the newest sample alone), never at 90% of the host.
- disk: a scratch filesystem: a 4 MB tmpfs in another such container, filled by dd, which the disk rule reads
  through /proc/<pid>/root (the host's view of the container's files: ops must run on the Docker host as root,
  as the cron job does); emptied, it resolves. The data disk is never written.
- health:qdrant: qdrant stopped (`docker compose stop`), the health rule's checks run back to back (not a
  minute apart) until it fires at its third failure, qdrant started again and waited for until its probe answers,
  then resolved. Qdrant because nothing on a request's path needs it (the gateway, n8n's routing workflow and the
  observer do not), it stops and starts in a second or two with its data on its volume, and it is in the core (no
  profile), so every stack has it; the cron job, a minute apart, sees it down once at most and needs three.
- spend:day-warn, spend:day, spend:month: the budget limiter's counters as LiteLLM keeps them, written into Redis
  database 15 (DRILL_DB), which nothing else uses, and read there by the same code (ops.cost.redis_spend):
  past $4 (80% of the daily budget), then past $10 a day and $40 a month, then deleted. LiteLLM's own counters
  (database 0) are never touched, so the gateway's budgets are what they were. By e-mail only, as the rule says.

Cleanup runs in ``finally`` blocks, shielded (ops.interrupts): SIGTERM, SIGHUP or Ctrl-C in the middle of a drill
removes the containers, starts qdrant again and deletes the drill's counters before the process ends. A SIGKILL
cannot be caught: the containers end themselves after LIFETIME seconds (their command is `sleep`, removed on exit),
the counters expire after COUNTER_TTL, and the next drill removes what an earlier one left; only qdrant would stay
stopped (`docker compose start qdrant`), and the next verify says so.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from docker.errors import DockerException, NotFound

from ops.alerts import rules as rule
from ops.alerts.check import CheckReport, HealthLike, Sources, run_check
from ops.alerts.state import AlertNotice, Thresholds
from ops.config import Settings
from ops.errors import OpsError
from ops.interrupts import shielded, signals_as_exceptions
from ops.runtime.compose import Compose
from ops.slices.base import Check

TAG = "(drill) "
MEMINFO = Path("/proc/meminfo")
LABEL = "aistack.drill"  # on each drill container, valued with the drill's run id
LIFETIME = 300  # seconds a drill container lives at most, even if ops is killed before it removes it
HOG_MIN_MB, HOG_MAX_MB = 256, 1024
HOG_SPARE_MB = 256  # memory that must stay available beyond twice the hog, or the memory drill does not start
SCRATCH_MB = 4
IMAGE_SERVICES = ("redis", "postgres")  # whose image the drill containers run (sh, dd and sleep; always running)
HEALTH_SERVICE = "qdrant"
DRILL_DB = 15  # the Redis database of the drill's spend counters; LiteLLM's are in 0
DRILL_DEPLOYMENT = "slice11-drill"
COUNTER_TTL = 600  # seconds: the drill's counters expire even if it is killed before it deletes them
SPEND_KEYS = ("deployment_spend:*", "deployment_budget_start_time:*", "provider_spend:*", "provider_budget_start_time:*")
FIRE_WITHIN = 15.0  # seconds of checks until the memory and disk alerts fire (a busy host's noise)
RESOLVE_WITHIN = 30.0
RESTART_WITHIN = 120.0  # seconds for qdrant to answer again after its start
POLL = 0.5


class DrillError(OpsError):
    """A drill could not be set up or run; the message says what and what to do."""


def hog_mb(total_kb: int) -> int:
    """Given MemTotal in kB, return the memory hog's size in MB: a sixteenth of the memory, at least 256 MB and at most
    1 GB (256 MB on the 4 GB e2-medium; on a larger host enough to stand out of the other processes' noise)."""
    return int(min(HOG_MAX_MB, max(HOG_MIN_MB, total_kb / 1024 / 16)))


def memory_line(before: float, during: float, expected: float) -> float:
    """Given the memory in use (%) before the hog and with it, and the share the hog should add, return the drill's
    line: half the hog (or half the rise, if smaller) below the value with the hog, so above the value before.

    A check with the hog is then above the line by half a hog, one after it is removed below by as much, even when
    another process took memory meanwhile. Raise DrillError if the rise is less than half the hog's share (the hog
    did not show, or something freed as much meanwhile).
    """
    rise = during - before
    if rise < expected / 2:
        raise DrillError(
            f"the memory in use rose from {before:.2f}% to {during:.2f}% with the hog, less than half the {expected:.2f}% "
            "it holds: another process freed memory meanwhile; run the verify again"
        )
    return round(during - min(rise, expected) / 2, 2)


def with_database(url: str, db: int) -> str:
    """Given a Redis URL (redis://, rediss:// or unix://), return it with database db instead of its own."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"]
    if parts.scheme == "unix":  # the socket's path is the URL's; the database a parameter
        return f"{url.partition('?')[0]}?{urlencode([*query, ('db', str(db))])}"
    return urlunsplit(parts._replace(path=f"/{db}", query=urlencode(query)))


def delivery(report: CheckReport, notice: AlertNotice) -> tuple[bool, str]:
    """Given a check's report and one of its notices, return whether every configured notifier the notice goes to
    took it (and none it must not go to), and a phrase saying by which."""
    subject = notice.notice().subject
    took = sorted({c for c, _, s in (line.partition(": ") for line in report.sent) if s == subject} - {"log"})
    failed = [line for line in report.failed if line.partition(": ")[2].startswith(subject)]
    wanted = [n for n in report.notifiers if n != "log" and (not notice.channels or n in notice.channels)]
    stray = [n for n in took if notice.channels and n not in notice.channels]
    if not wanted:
        only = f" ({' or '.join(notice.channels)} only)" if notice.channels else ""
        return False, f"delivered by nothing: no notifier it goes to{only} is configured"
    missing = [n for n in wanted if n not in took]
    text = f"delivered by {', '.join(took) or 'nothing'}"
    if missing:
        text += f"; NOT by {', '.join(missing)}" + (f" ({'; '.join(failed)})" if failed else "")
    if stray:
        text += f"; also by {', '.join(stray)}, where it must not go"
    return not missing and not stray, text


def _found(report: CheckReport, key: str, kind: str) -> AlertNotice | None:
    return next((n for n in report.notices if n.key == key and n.kind == kind), None)


def _seen(kind: str, report: CheckReport, notice: AlertNotice | None, waited: str = "") -> tuple[bool, str]:
    """One transition's verdict: it happened (its detail), and by which notifiers it was delivered."""
    verb = "fired" if kind == "firing" else "resolved"
    if notice is None:
        problems = f" (the check's problems: {'; '.join(report.problems)})" if report.problems else ""
        return False, f"NOT {verb}{waited}{problems}"
    ok, how = delivery(report, notice)
    return ok, f"{verb}: {notice.detail}; {how}"


def _verdict(key: str, intro: str, *steps: tuple[bool, str]) -> Check:
    return Check(key, all(ok for ok, _ in steps), "; ".join([intro, *(text for _, text in steps)]))


@dataclass
class Drills:
    """The drills of one verify: the project, a scratch directory for their state files, the stack's compose."""

    settings: Settings
    scratch: Path
    compose: Compose
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    _docker: Any = None

    def check(self, name: str, rules: tuple[str, ...], limits: Thresholds | None = None,
              sources: Sources | None = None) -> CheckReport:  # fmt: skip
        """Run the real check of rules with the drill's own state file (one per drill), tagged as a drill."""
        state = self.scratch / f"{name.replace(':', '-')}.json"
        limits = replace(limits or Thresholds(), resolve_checks=1)  # a drill resolves at its first clear check
        return run_check(self.settings, rules=rules, thresholds=limits, state_file=state, sources=sources, tag=TAG)

    def until(
        self, check: Callable[[], CheckReport], key: str, kind: str, within: float
    ) -> tuple[CheckReport, AlertNotice | None]:
        """Run check until its report has key's notice of kind, at most within seconds; return the last report and it."""
        deadline = time.monotonic() + within
        while True:
            report = check()
            notice = _found(report, key, kind)
            if notice is not None or time.monotonic() >= deadline:
                return report, notice
            time.sleep(POLL)

    # --- the containers of the memory and disk drills ---

    @property
    def docker(self) -> Any:
        if self._docker is None:
            from ops.runtime.docker import client

            self._docker = client(self.compose.docker_host)
        return self._docker

    def image(self) -> tuple[str, str]:
        """Return the image of a running service of IMAGE_SERVICES and the compose project's name; remove the drill
        containers an earlier, killed drill left. Raise DrillError if none of them runs."""
        states = self.compose.ps()
        for service in IMAGE_SERVICES:
            state = states.get(service)
            if state is not None and state.running:
                container = self.docker.containers.get(state.container_id)
                project = str(container.labels.get("com.docker.compose.project", ""))
                self._remove({"label": [LABEL, f"com.docker.compose.project={project}"]})
                return str(container.image.id), project
        raise DrillError(f"none of {', '.join(IMAGE_SERVICES)} is running: the drill's containers run one of their images")

    def _remove(self, filters: dict[str, Any]) -> None:
        for container in self.docker.containers.list(all=True, filters=filters):
            with contextlib.suppress(NotFound):  # removed on exit (auto_remove) meanwhile
                container.remove(force=True)

    @contextlib.contextmanager
    def container(self, kind: str, image: str, project: str, tmpfs_mb: int, memory_mb: int) -> Iterator[Any]:
        """Run a drill container (`sleep LIFETIME`, a tmpfs of tmpfs_mb at /scratch, memory_mb at most, no network, a
        read-only root, no capabilities) while the block runs; remove it after, even on SIGTERM."""
        labels = {LABEL: self.run_id, "com.docker.compose.project": project, "com.docker.compose.service": f"{kind}-drill"}
        ours = {"label": [f"{LABEL}={self.run_id}", f"com.docker.compose.service={kind}-drill"]}
        try:
            yield self.docker.containers.run(
                image,
                [str(LIFETIME)],
                entrypoint=["sleep"],
                name=f"aistack-{kind}-drill-{self.run_id}",
                labels=labels,
                detach=True,
                auto_remove=True,
                network_mode="none",
                read_only=True,
                cap_drop=["ALL"],
                tmpfs={"/scratch": f"size={tmpfs_mb}m"},
                mem_limit=f"{memory_mb}m",
                memswap_limit=f"{memory_mb}m",  # no swap: the hog stays in memory
            )
        except BaseException:  # a signal (or an error): remove it, then let that through
            with shielded(), contextlib.suppress(DockerException):  # the error that got here is the one to say
                self._remove(ours)
            raise
        with shielded():  # a signal now waits until the container is gone
            self._remove(ours)

    @staticmethod
    def run_in(container: Any, *command: str) -> tuple[int, str]:
        result = container.exec_run(list(command))
        return int(result.exit_code), bytes(result.output or b"").decode(errors="replace").strip()

    # --- the drills ---

    def memory(self) -> list[Check]:
        key = "memory"
        total, available = rule.meminfo_kb(MEMINFO)
        size = hog_mb(total)
        needed = 2 * size + HOG_SPARE_MB
        if available < needed * 1024:
            why = f"only {available // 1024} MB of memory available: a {size} MB hog needs {needed} MB to be safe"
            return [Check(key, False, f"{why}; run the verify when the VM is quieter")]
        expected = 100.0 * size * 1024 / total
        image, project = self.image()
        before = rule.memory_percent(MEMINFO)
        with self.container("memory", image, project, tmpfs_mb=size + 16, memory_mb=size + 64) as hog:
            status, output = self.run_in(hog, "dd", "if=/dev/zero", "of=/scratch/hog", "bs=1M", f"count={size}")
            if status != 0:
                raise DrillError(f"the memory hog could not write its {size} MB: {output[-300:]}")
            during = rule.memory_percent(MEMINFO)
            line = memory_line(before, during, expected)
            limits = replace(Thresholds(), memory_percent=line, memory_minutes=0.0)
            fired, fire = self.until(lambda: self.check(key, ("memory",), limits), key, "firing", FIRE_WITHIN)
        intro = (f"a {size} MB hog in a container: {before:.2f}% of the memory in use before, {during:.2f}% with it, "
                 f"drill line {line:g}% for 0 minutes")  # fmt: skip
        steps = [_seen("firing", fired, fire, f" within {FIRE_WITHIN:g} s")]
        if fire is not None:
            resolved, notice = self.until(lambda: self.check(key, ("memory",), limits), key, "resolved", RESOLVE_WITHIN)
            steps.append(_seen("resolved", resolved, notice, f" within {RESOLVE_WITHIN:g} s of the hog's removal"))
        return [_verdict(key, intro, *steps)]

    def disk(self) -> list[Check]:
        image, project = self.image()
        with self.container("disk", image, project, tmpfs_mb=SCRATCH_MB, memory_mb=SCRATCH_MB + 28) as box:
            box.reload()
            where = Path(f"/proc/{box.attrs['State']['Pid']}/root/scratch")
            try:
                os.statvfs(where)
            except OSError as exc:
                raise DrillError(
                    f"cannot see the drill's scratch filesystem at {where}: {exc.strerror}; run it on the Docker host as "
                    "root, as the cron job runs"
                ) from exc
            self.run_in(box, "dd", "if=/dev/zero", "of=/scratch/fill", "bs=64k", f"count={SCRATCH_MB * 16 + 16}")  # to ENOSPC
            key, sources = f"disk:{where}", Sources(disk_paths=(where,))
            fired, fire = self.until(lambda: self.check("disk", ("disk",), sources=sources), key, "firing", FIRE_WITHIN)
            steps = [_seen("firing", fired, fire)]
            if fire is not None:
                self.run_in(box, "rm", "-f", "/scratch/fill")
                resolved, notice = self.until(lambda: self.check("disk", ("disk",), sources=sources), key, "resolved",
                                              RESOLVE_WITHIN)  # fmt: skip
                steps.append(_seen("resolved", resolved, notice, " once emptied"))
        intro = f"a {SCRATCH_MB} MB scratch filesystem in a container, filled by dd, at the rule's {Thresholds().disk_percent:g}%"
        return [_verdict("disk", intro, *steps)]

    def health(self) -> list[Check]:
        from ops.health import run_health

        service, key, limits = HEALTH_SERVICE, f"health:{HEALTH_SERVICE}", Thresholds()

        def probe(settings: Settings) -> HealthLike:
            return run_health(settings, timeout=3.0, only=(service,))

        state = self.compose.ps().get(service)
        if state is None or not state.running:
            how = f"`docker compose start {service}`" + (" (a drill killed before it restarted it?)" if state else "")
            return [Check(key, False, f"{service} is not running, so it cannot be stopped for the drill: {how}")]
        answer = probe(self.settings).results[0]
        if not answer.ok:
            return [Check(key, False, f"{service} fails its health check already: {answer.detail}")]
        sources, name = Sources(health=probe), "health"
        try:
            self.compose.run("stop", service)
            reports = [self.check(name, ("health",), sources=sources) for _ in range(limits.health_failures)]
            firings = [i for i, r in enumerate(reports, 1) if _found(r, key, "firing")]
            self.start(service, state.container_id)
        except BaseException:  # a signal (or an error) while it is stopped: start it again before anything else
            with shielded(), contextlib.suppress(OpsError, DockerException):  # the error that got here is the one to say
                self.start(service, state.container_id)
            raise
        deadline = time.monotonic() + RESTART_WITHIN
        while not (answer := probe(self.settings).results[0]).ok and time.monotonic() < deadline:
            time.sleep(POLL)
        fired = reports[firings[0] - 1] if firings else reports[-1]
        steps = [_seen("firing", fired, _found(fired, key, "firing"), f" after {len(reports)} failed checks")]
        if firings != [limits.health_failures]:
            steps.append((False, f"it fired at check {firings} of {limits.health_failures}, not at the last"))
        if not answer.ok:
            steps.append((False, f"{service} did not answer within {RESTART_WITHIN:g} s of its start: {answer.detail}"))
        else:
            resolved = self.check(name, ("health",), sources=sources)
            steps.append(_seen("resolved", resolved, _found(resolved, key, "resolved"), " once it answered"))
        intro = f"{service} stopped, {limits.health_failures} checks back to back, started again"
        return [_verdict(key, intro, *steps)]

    def start(self, service: str, container_id: str) -> None:
        """Start service's container again; return once Docker says it runs. Raise DrillError after RESTART_WITHIN.

        Asked by inspecting the container, and started again until it runs: for a moment after a container died
        Docker still lists it as running (its list is updated last), and `docker compose start` then skips it.
        """
        deadline = time.monotonic() + RESTART_WITHIN
        while not self.docker.containers.get(container_id).attrs["State"]["Running"]:
            if time.monotonic() >= deadline:
                raise DrillError(f"{service} did not start again within {RESTART_WITHIN:g} s: `docker compose start {service}`")
            self.compose.run("start", service)
            time.sleep(POLL)

    def spend(self) -> list[Check]:
        import redis

        from ops.cost import budgets, redis_spend
        from ops.events.context import events_config
        from ops.events.publisher import connect

        limits, budget = Thresholds(), budgets(self.settings)
        warn = limits.day_warn_usd if limits.day_warn_usd is not None else budget.day_warn
        group = next(iter(budget.daily_by_group))
        url = events_config(self.settings).redis_url
        if urlsplit(url).path.strip("/") == str(DRILL_DB) or ("db", str(DRILL_DB)) in parse_qsl(urlsplit(url).query):
            raise DrillError(f"OPS_REDIS_URL names database {DRILL_DB}, the spend drill's own: name LiteLLM's (0)")
        client = connect(with_database(url, DRILL_DB))
        note = f"slice 11's drill counters in Redis database {DRILL_DB}, not LiteLLM's"
        sources = Sources(spend=lambda s: redis_spend(client, {DRILL_DEPLOYMENT: group}, budget.provider_of_group, note))
        provider = budget.provider_of_group.get(group, "?")

        def counters(day: float, month: float) -> None:
            """Replace the drill's counters: day's and month's USD, each only when more than 0."""
            self._clear(client)
            now, values = time.time(), dict[str, float]()
            if day:
                values[f"deployment_spend:{DRILL_DEPLOYMENT}:1d"] = day
                values[f"deployment_budget_start_time:{DRILL_DEPLOYMENT}"] = now
            if month:
                values |= {f"provider_spend:{provider}:30d": month, f"provider_budget_start_time:{provider}": now}
            for name, value in values.items():
                client.set(name, value, ex=COUNTER_TTL)

        keys = ("spend:day-warn", "spend:day", "spend:month")
        stages = (
            (min(warn + 0.5, (warn + limits.day_usd) / 2), 0.0, "firing", keys[:1]),
            (limits.day_usd + 0.5, limits.month_usd + 0.5, "firing", keys[1:]),
            (0.0, 0.0, "resolved", keys),
        )
        seen: dict[str, list[tuple[bool, str]]] = {k: [] for k in keys}
        try:
            for day, month, kind, expected in stages:
                counters(day, month)
                report = self.check("spend", ("spend",), sources=sources)
                at = f" at ${day:.2f} a day, ${month:.2f} a month"
                for key in expected:
                    seen[key].append(_seen(kind, report, _found(report, key, kind), at))
                for early in [n.key for n in report.notices if n.kind == "firing" and n.key not in expected]:
                    seen.setdefault(early, []).append((False, f"fired too early,{at}"))
        except redis.RedisError as exc:
            raise DrillError(f"cannot write the drill's spend counters in Redis database {DRILL_DB}: {exc}") from exc
        finally:
            with shielded():  # a signal now waits until the drill's counters are gone
                with contextlib.suppress(redis.RedisError):
                    self._clear(client)
                client.close()
        intro = f"LiteLLM's counters written in Redis database {DRILL_DB} (its own are in 0, untouched), by e-mail only"
        return [_verdict(key, intro, *seen[key]) for key in keys]

    @staticmethod
    def _clear(client: Any) -> None:
        for pattern in SPEND_KEYS:
            for name in list(client.scan_iter(match=pattern, count=500)):
                client.delete(name)


DRILLS: tuple[tuple[str, Callable[[Drills], list[Check]]], ...] = (
    ("memory", Drills.memory),
    ("disk", Drills.disk),
    (f"health:{HEALTH_SERVICE}", Drills.health),
    ("spend", Drills.spend),
)


def run_drills(settings: Settings) -> list[Check]:
    """Given Settings of the running stack, fire each alert on purpose and return one Check per alert: fired,
    delivered, resolved. A drill that cannot run is a failed Check saying why; its cleanup runs even on SIGTERM."""
    checks: list[Check] = []
    with signals_as_exceptions(), tempfile.TemporaryDirectory(prefix="aistack-drills-") as scratch:
        drills = Drills(settings, Path(scratch), Compose.for_settings(settings))
        for name, drill in DRILLS:
            try:
                checks += drill(drills)
            except (OpsError, DockerException) as exc:
                checks.append(Check(name, False, str(exc)))
    return checks
