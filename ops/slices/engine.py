"""The slice engine: plan, apply (idempotent, with a safety snapshot), verify, and roll back.

Given Settings, a slice number and the stack's runtime, each run_* function
returns a report. Apply takes the operator lock, journals the operation,
snapshots what the slice touches (files, databases, which containers ran),
brings the slice's services up, and verifies; a failed verify rolls back to
the snapshot on its own. A rollback first saves what it is about to
replace, so it never drops data it has not saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from ops.config import Settings
from ops.errors import OpsError
from ops.journal import Journal, Lock, Psql
from ops.runtime.compose import Compose
from ops.slices import VerifyReport, get_slice, registered
from ops.slices.base import Check, Target


@dataclass(frozen=True)
class Runtime:
    """What the engine acts on: compose for the stack, psql into its Postgres, and the verify target."""

    settings: Settings
    compose: Compose
    psql: Psql
    target: Target

    @classmethod
    def for_settings(cls, settings: Settings) -> Runtime:
        """Given safe Settings, return the runtime of the stack. Raise ConfigError on placeholder secrets."""
        compose = Compose.for_settings(settings)
        target = Target.from_settings(settings)
        psql = Psql(tuple(compose.argv("exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "postgres")))
        drill = _compose_drill(compose)
        return cls(settings, compose, psql, dataclasses.replace(target, break_openai=drill))


def _compose_drill(compose: Compose) -> Callable[[], AbstractContextManager[None]]:
    """The slice-5 drill on Docker: recreate litellm with a broken OpenAI key, then with the real one."""

    @contextlib.contextmanager
    def break_openai() -> Iterator[None]:
        # compose takes the process environment over the env file
        dataclasses.replace(compose, extra_env=(("OPENAI_API_KEY", "sk-broken-by-ops-drill"),)).up(["litellm"])
        try:
            yield
        finally:
            compose.up(["litellm"])

    return break_openai


@dataclass
class Plan:
    number: int
    title: str
    requires: tuple[int, ...]
    services: tuple[str, ...]
    files: tuple[str, ...]
    databases: tuple[str, ...]
    files_digest: str = ""
    running: dict[str, bool] = field(default_factory=dict)
    compose_actions: list[str] = field(default_factory=list)

    @property
    def hash(self) -> str:
        return plan_hash(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "slice": self.number,
            "title": self.title,
            "requires": list(self.requires),
            "services": list(self.services),
            "files": list(self.files),
            "databases": list(self.databases),
            "running": self.running,
            "compose_actions": self.compose_actions,
            "plan_hash": self.hash,
        }


@dataclass
class ApplyReport:
    number: int
    outcome: str  # ok | unchanged | rolled-back | dry-run
    changed: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    snapshot: str = ""
    rollback: RollbackReport | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("ok", "unchanged", "dry-run")

    def to_dict(self) -> dict[str, Any]:
        return {
            "slice": self.number,
            "outcome": self.outcome,
            "ok": self.ok,
            "changed": self.changed,
            "checks": [c.to_dict() for c in self.checks],
            "snapshot": self.snapshot,
            "rollback": self.rollback.to_dict() if self.rollback else None,
        }


@dataclass
class RollbackReport:
    number: int
    snapshot: str
    saved_to: str
    steps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"slice": self.number, "snapshot": self.snapshot, "saved_to": self.saved_to, "steps": self.steps}


def plan_hash(plan: Plan) -> str:
    digest = hashlib.sha256(f"{plan.number}|{plan.services}|{plan.databases}|{plan.files_digest}".encode())
    return digest.hexdigest()[:16]


def _files_digest(settings: Settings, files: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in files:
        path = settings.project_dir / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b"<absent>"))
    return digest.hexdigest()[:16]


def run_plan(runtime: Runtime, number: int) -> Plan:
    """Return what applying slice number would touch, and what compose would do (its dry run)."""
    module = get_slice(number)
    plan = Plan(number, module.TITLE, module.REQUIRES, module.SERVICES, module.FILES, module.DATABASES)
    plan.files_digest = _files_digest(runtime.settings, plan.files)
    if plan.services:
        states = runtime.compose.ps()
        plan.running = {s: s in states and states[s].running for s in plan.services}
        wanted = runtime.compose.config_hashes(plan.services)
        current = runtime.compose.container_hashes()
        for service in plan.services:
            if not plan.running[service]:
                plan.compose_actions.append(f"{service}: start")
            elif current.get(service) != wanted.get(service):
                plan.compose_actions.append(f"{service}: recreate (its configuration changed)")
            else:
                plan.compose_actions.append(f"{service}: unchanged")
    return plan


def _database_exists(psql: Psql, database: str) -> bool:
    return bool(psql.query("SELECT 1 FROM pg_database WHERE datname = :'db';", db=database))


def _dump(runtime: Runtime, database: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        runtime.compose.stream("exec", "-T", "postgres", "pg_dump", "-U", "postgres", "-Fc", database, stdout=out)


def take_snapshot(runtime: Runtime, plan: Plan, action: str) -> Path:
    """Save the slice's files, databases and container states under .ops/snapshots; return the directory."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    directory = runtime.settings.snapshots_dir / f"{stamp}-slice{plan.number:02d}-{action}"
    (directory / "files").mkdir(parents=True)
    state: dict[str, Any] = {"slice": plan.number, "files": {}, "databases": {}, "containers": {}}
    for name in plan.files:
        source = runtime.settings.project_dir / name
        state["files"][name] = source.exists()
        if source.exists():
            (directory / "files" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, directory / "files" / name)
    for database in plan.databases:
        exists = _database_exists(runtime.psql, database)
        state["databases"][database] = exists
        if exists:
            _dump(runtime, database, directory / "databases" / f"{database}.dump")
    states = runtime.compose.ps() if plan.services else {}
    state["containers"] = {s: states[s].container_id if s in states and states[s].running else None for s in plan.services}
    (directory / "state.json").write_text(json.dumps(state, indent=2))
    return directory


def latest_snapshot(settings: Settings, number: int) -> Path:
    """Return the newest apply snapshot of slice number. Raise OpsError if there is none."""
    found = sorted(settings.snapshots_dir.glob(f"*-slice{number:02d}-apply")) if settings.snapshots_dir.exists() else []
    if not found:
        raise OpsError(f"slice {number} has no snapshot to roll back to (it was never applied by ops)")
    return found[-1]


def _require_prerequisites(journal: Journal, module: ModuleType) -> None:
    missing = [r for r in module.REQUIRES if r in registered() and not journal.verified(r)]
    if missing:
        first = missing[0]
        raise OpsError(f"slice {module.NUMBER} needs slice {first} applied and verified first (make slice-{first})")


def run_apply(runtime: Runtime, number: int, dry_run: bool = False) -> ApplyReport:
    """Apply slice number: lock, journal, snapshot, compose up, verify; roll back on a failed verify.

    Raise OpsError if a prerequisite is missing or the lock is held (nothing changed then).
    """
    module = get_slice(number)
    plan = run_plan(runtime, number)
    if dry_run:
        return ApplyReport(number, "dry-run", changed=plan.compose_actions)
    runtime.compose.up(["postgres"])  # the journal and the lock live there
    journal = Journal(runtime.psql)
    _require_prerequisites(journal, module)
    with Lock(runtime.psql, f"apply slice {number}") as lock:
        entry = journal.start(number, "apply", plan.hash)
        try:
            snapshot = take_snapshot(runtime, plan, "apply")
            before = {s: c.container_id for s, c in runtime.compose.ps().items() if c.running}
            last_good = _last_good(runtime.settings, number)
            # a bind-mounted file that changed is not a compose change: recreate so the service reads it
            files_changed = (
                last_good is not None and json.loads((last_good / "state.json").read_text()).get("digest") != plan.files_digest
            )
            if plan.services:
                runtime.compose.up(plan.services, force_recreate=files_changed)
            installed = module.install(runtime.settings) if hasattr(module, "install") else []
            lock.heartbeat()
            after = {s: c.container_id for s, c in runtime.compose.ps().items() if c.running}
            changed = [s for s in plan.services if before.get(s) != after.get(s)] + installed
            checks = module.verify(runtime.target)
        except BaseException as exc:
            journal.finish(entry, "failed", f"{type(exc).__name__}: {exc}")
            raise
        if all(c.ok for c in checks):
            _keep_last_good(runtime.settings, plan)
            outcome = "ok" if changed else "unchanged"
            journal.finish(entry, "ok", json.dumps({"changed": changed, "snapshot": snapshot.name}))
            if not changed:
                shutil.rmtree(snapshot)  # nothing changed: nothing to roll back to
            return ApplyReport(number, outcome, changed, checks, "" if not changed else snapshot.name)
        rollback = _rollback_to(runtime, plan, snapshot, files_from=_last_good(runtime.settings, plan.number))
        failed = "; ".join(f"{c.name}: {c.detail}" for c in checks if not c.ok)
        journal.finish(entry, "rolled-back", f"verify failed ({failed}); restored {snapshot.name}")
        return ApplyReport(number, "rolled-back", changed, checks, snapshot.name, rollback)


def run_verify(runtime: Runtime, number: int) -> VerifyReport:
    """Verify slice number against the running stack and journal the outcome."""
    module = get_slice(number)
    journal = Journal(runtime.psql)
    entry = journal.start(number, "verify")
    report = VerifyReport(number, module.TITLE, module.verify(runtime.target))
    journal.finish(entry, "ok" if report.ok else "failed", "; ".join(f"{c.name}: {c.detail}" for c in report.checks if not c.ok))
    return report


def run_rollback(runtime: Runtime, number: int) -> RollbackReport:
    """Roll slice number back to the snapshot of its latest apply (saving the current state first)."""
    module = get_slice(number)
    snapshot = latest_snapshot(runtime.settings, number)
    journal = Journal(runtime.psql)
    with Lock(runtime.psql, f"rollback slice {number}"):
        entry = journal.start(number, "rollback")
        plan = Plan(number, module.TITLE, module.REQUIRES, module.SERVICES, module.FILES, module.DATABASES)
        try:
            report = _rollback_to(runtime, plan, snapshot)
        except BaseException as exc:
            journal.finish(entry, "failed", f"{type(exc).__name__}: {exc}")
            raise
        journal.finish(entry, "ok", f"restored {snapshot.name}; current state saved to {report.saved_to}")
        snapshot.rename(snapshot.with_name(snapshot.name + "-restored"))
        return report


def _last_good(settings: Settings, number: int) -> Path | None:
    """The slice's files as of its latest verified apply, or None if it never passed."""
    directory = settings.project_dir / ".ops" / "applied" / f"slice{number:02d}"
    return directory if (directory / "state.json").exists() else None


def _keep_last_good(settings: Settings, plan: Plan) -> None:
    directory = settings.project_dir / ".ops" / "applied" / f"slice{plan.number:02d}"
    shutil.rmtree(directory, ignore_errors=True)
    (directory / "files").mkdir(parents=True)
    present = {}
    for name in plan.files:
        source = settings.project_dir / name
        present[name] = source.exists()
        if source.exists():
            (directory / "files" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, directory / "files" / name)
    (directory / "state.json").write_text(json.dumps({"files": present, "digest": plan.files_digest}))


def _rollback_to(runtime: Runtime, plan: Plan, snapshot: Path, files_from: Path | None = None) -> RollbackReport:
    """Return the slice to snapshot: save the current state, stop its services, restore databases and files, restart.

    Files come from files_from (the last verified apply) when given: after a
    failed verify the snapshot holds the very edit that failed.
    """
    state = json.loads((snapshot / "state.json").read_text())
    files_state = json.loads(((files_from or snapshot) / "state.json").read_text())["files"]
    files_dir = (files_from or snapshot) / "files"
    saved = take_snapshot(runtime, plan, "before-rollback")
    report = RollbackReport(plan.number, snapshot.name, saved.name)
    compose, psql, project = runtime.compose, runtime.psql, runtime.settings.project_dir
    if plan.services:
        compose.stop_and_remove(plan.services)
        report.steps.append(f"stopped {', '.join(plan.services)}")
    for database, existed in state["databases"].items():
        if existed:
            with (snapshot / "databases" / f"{database}.dump").open("rb") as dump:
                compose.stream(
                    "exec", "-T", "postgres", "pg_restore", "-U", "postgres", "--clean", "--if-exists", "-d", database, stdin=dump
                )
            report.steps.append(f"restored database {database}")
        elif _database_exists(psql, database):
            psql.query("SELECT format('DROP DATABASE %I WITH (FORCE)', :'db') \\gexec", db=database)
            report.steps.append(f"dropped database {database} (saved in {saved.name})")
    for name, existed in files_state.items():
        target = project / name
        if existed:
            if target.exists() and target.read_bytes() == (files_dir / name).read_bytes():
                continue
            shutil.copy2(files_dir / name, target)
            report.steps.append(f"restored {name}" + (" (last verified version)" if files_from else ""))
        elif target.exists():
            target.unlink()
            report.steps.append(f"removed {name} (saved in {saved.name})")
    module = get_slice(plan.number)
    if hasattr(module, "install"):  # what the slice installs outside the project follows its restored files
        report.steps += module.install(runtime.settings)
    running = [s for s, container in state["containers"].items() if container]
    if running:
        compose.up(running)
        report.steps.append(f"started {', '.join(running)} as before")
    return report


@dataclass(frozen=True)
class SliceStatus:
    number: int
    title: str
    state: str
    at: str

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def run_status(runtime: Runtime) -> list[SliceStatus]:
    """Each slice's latest journaled operation (or 'never run')."""
    states = Journal(runtime.psql).slice_states()
    out = []
    for number, module in sorted(registered().items()):
        entry = states.get(number)
        label = f"{entry.action} {entry.outcome}" if entry else "never run"
        out.append(SliceStatus(number, module.TITLE, label, entry.started_at if entry else ""))
    return out
