"""The slice engine: plan, apply (idempotent, with a safety snapshot), verify, and roll back.

Given Settings, a slice number and the stack's runtime, each run_* function
returns a report. Apply takes the operator lock, journals the operation,
snapshots what the slice touches (files, databases, which containers ran),
brings the slice's services up, and verifies; a failed verify rolls back to
the snapshot on its own, and so does an apply whose compose up, install
step or verify raises. A rollback first saves what it is about to
replace, so it never drops data it has not saved.

Snapshots are written to ``<name>.partial`` and renamed when complete, so a
rollback never picks a half-written one; they are private (0700 directories,
0600 files: the dumps hold the databases) and the newest KEEP_SNAPSHOTS of
each slice are kept. Every operation holds the operator lock and turns
SIGTERM, SIGHUP and SIGINT into an exception (ops.interrupts), so a dropped
ssh session still releases the lock, journals ``interrupted`` and ends the
slice-5 drill with the real key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
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
from ops.interrupts import Interrupted, shielded, signals_as_exceptions
from ops.journal import Entry, Journal, Lock, Psql, satisfies_prerequisite
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
        try:  # an interruption during the first up may already have left the broken key in place
            # compose takes the process environment over the env file
            dataclasses.replace(compose, extra_env=(("OPENAI_API_KEY", "sk-broken-by-ops-drill"),)).up(["litellm"])
            yield
        finally:
            with shielded():  # a signal now waits until the real key is back
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
    error: str = ""  # what failed, when a step (not a check) made it roll back

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
            "error": self.error,
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


KEEP_SNAPSHOTS = 5  # per slice; the one the last verified state came from is kept beyond these
PARTIAL = ".partial"
SNAPSHOT_NAME = re.compile(r"^(?P<stamp>\d{8}T\d+Z)-slice(?P<slice>\d{2})-(?P<action>.+?)(?P<partial>\.partial)?$")


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _private_copy(source: Path, target: Path) -> None:
    _private_dir(target.parent)
    shutil.copy2(source, target)
    target.chmod(0o600)


def _private_text(target: Path, text: str) -> None:
    with open(target, "w", opener=lambda path, flags: os.open(path, flags, 0o600)) as out:
        out.write(text)


def _dump(runtime: Runtime, database: str, target: Path) -> None:
    _private_dir(target.parent)
    with open(target, "wb", opener=lambda path, flags: os.open(path, flags, 0o600)) as out:
        runtime.compose.stream("exec", "-T", "postgres", "pg_dump", "-U", "postgres", "-Fc", database, stdout=out)


def take_snapshot(runtime: Runtime, plan: Plan, action: str) -> Path:
    """Save the slice's files, databases and container states under .ops/snapshots; return the directory.

    It is written as ``<name>.partial`` and renamed when complete. Raise (OpsError from a
    failed dump) after removing the partial directory; a killed process leaves only a
    ``.partial`` one, which no rollback picks.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    directory = runtime.settings.snapshots_dir / f"{stamp}-slice{plan.number:02d}-{action}"
    partial = directory.with_name(directory.name + PARTIAL)
    _private_dir(runtime.settings.snapshots_dir)  # the dumps hold the databases: only their owner reads them
    try:
        _private_dir(partial)
        _private_dir(partial / "files")
        state: dict[str, Any] = {"slice": plan.number, "files": {}, "modes": {}, "databases": {}, "containers": {}}
        for name in plan.files:
            source = runtime.settings.project_dir / name
            state["files"][name] = source.exists()
            if source.exists():
                state["modes"][name] = source.stat().st_mode & 0o777  # the copy is 0600; a restore gives this back
                _private_copy(source, partial / "files" / name)
        for database in plan.databases:
            exists = _database_exists(runtime.psql, database)
            state["databases"][database] = exists
            if exists:
                _dump(runtime, database, partial / "databases" / f"{database}.dump")
        states = runtime.compose.ps() if plan.services else {}
        state["containers"] = {s: states[s].container_id if s in states and states[s].running else None for s in plan.services}
        _private_text(partial / "state.json", json.dumps(state, indent=2))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(directory)
    return directory


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    slice: int
    action: str  # apply | before-rollback | apply-restored
    complete: bool


def snapshot_complete(directory: Path) -> bool:
    """Given a snapshot directory, return True if it was finished: not .partial, its state.json
    parses, and every file and database dump the state lists is there."""
    if directory.name.endswith(PARTIAL):
        return False
    try:
        state = json.loads((directory / "state.json").read_text())
    except (OSError, ValueError):
        return False
    files, databases = state.get("files"), state.get("databases")
    if not isinstance(files, dict) or not isinstance(databases, dict) or not isinstance(state.get("containers"), dict):
        return False
    return all((directory / "files" / name).is_file() for name, present in files.items() if present) and all(
        (directory / "databases" / f"{database}.dump").is_file() for database, present in databases.items() if present
    )


def list_snapshots(settings: Settings, number: int) -> list[SnapshotInfo]:
    """Return slice number's snapshots, oldest first, each marked complete or not."""
    found = []
    for path in settings.snapshots_dir.iterdir() if settings.snapshots_dir.is_dir() else ():
        match = SNAPSHOT_NAME.match(path.name)
        if match and path.is_dir() and int(match["slice"]) == number:
            found.append(SnapshotInfo(path.name, number, match["action"], snapshot_complete(path)))
    return sorted(found, key=lambda s: s.name)


def pick_rollback_snapshot(number: int, snapshots: list[SnapshotInfo]) -> str:
    """Given slice number's snapshots (oldest first), return the newest complete apply snapshot's name.

    Raise OpsError if there is none, naming the incomplete ones skipped.
    """
    applies = [s for s in snapshots if s.action == "apply"]
    complete = [s for s in applies if s.complete]
    if complete:
        return complete[-1].name
    if applies:
        raise OpsError(
            f"slice {number} has no complete snapshot to roll back to: {len(applies)} incomplete one(s) skipped "
            f"(a dump failed or the apply was killed), the newest {applies[-1].name}"
        )
    raise OpsError(f"slice {number} has no snapshot to roll back to (it was never applied by ops)")


def latest_snapshot(settings: Settings, number: int) -> Path:
    """Return the newest complete apply snapshot of slice number. Raise OpsError if there is none."""
    return settings.snapshots_dir / pick_rollback_snapshot(number, list_snapshots(settings, number))


def snapshots_to_prune(snapshots: list[SnapshotInfo], keep: int, needed: frozenset[str] = frozenset()) -> list[str]:
    """Given one slice's snapshots (oldest first), return the names to delete.

    Every incomplete one goes (only an apply holding the lock writes one, and it has finished);
    of the complete ones the newest keep stay, and so do those in needed.
    """
    complete = [s.name for s in snapshots if s.complete]
    kept = set(complete[-keep:] if keep > 0 else []) | needed
    return [s.name for s in snapshots if s.name not in kept]


def prune_snapshots(settings: Settings, number: int, keep: int = KEEP_SNAPSHOTS) -> list[str]:
    """Delete slice number's incomplete and surplus snapshots (never the last verified state's); return their names."""
    last_good = _last_good(settings, number)
    needed = json.loads((last_good / "state.json").read_text()).get("snapshot") if last_good else None
    names = snapshots_to_prune(list_snapshots(settings, number), keep, frozenset([needed] if needed else []))
    for name in names:
        shutil.rmtree(settings.snapshots_dir / name, ignore_errors=True)
    return names


def prerequisite_problem(number: int, requires: tuple[int, ...], states: dict[int, Entry]) -> str | None:
    """Given a slice's prerequisites and each slice's latest operation, return why it may not be applied, or None."""
    for first in requires:
        if first not in registered() or satisfies_prerequisite(states.get(first)):
            continue
        entry = states.get(first)
        if entry is None:
            return f"slice {number} needs slice {first} applied and verified first (make slice-{first})"
        return (
            f"slice {number} needs slice {first} applied and verified first, and its latest operation is "
            f"`{entry.action} {entry.outcome}` (make slice-{first})"
        )
    return None


def _require_prerequisites(journal: Journal, module: ModuleType) -> None:
    problem = prerequisite_problem(module.NUMBER, module.REQUIRES, journal.slice_states())
    if problem:
        raise OpsError(problem)


@dataclass
class _Row:
    """One journal row being written: the step under way, and whether it was finished."""

    journal: Journal
    id: int
    step: str = "starting"
    done: bool = False

    def finish(self, outcome: str, detail: str) -> None:
        with shielded():
            self.journal.finish(self.id, outcome, detail)
        self.done = True


@contextlib.contextmanager
def _journaled(journal: Journal, number: int, action: str, plan_hash: str = "", resume: str = "") -> Iterator[_Row]:
    """Journal an operation as running; if it ends without a recorded outcome, record interrupted or failed."""
    row = _Row(journal, journal.start(number, action, plan_hash))
    try:
        yield row
    except (Interrupted, KeyboardInterrupt) as exc:
        if not row.done:
            reason = str(exc) or "interrupted by SIGINT"
            row.finish("interrupted", f"{reason} during {row.step}" + (f"; {resume}" if resume else ""))
        raise
    except BaseException as exc:
        if not row.done:
            row.finish("failed", f"{row.step} failed: {type(exc).__name__}: {exc}")
        raise
    if not row.done:
        row.finish("failed", f"{action} ended without an outcome during {row.step}")


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, OpsError) else f"{type(exc).__name__}: {exc}"


def _failure(step: str, exc: Exception) -> str:
    return f"{step} failed: {_reason(exc)}"


def run_apply(runtime: Runtime, number: int, dry_run: bool = False) -> ApplyReport:
    """Apply slice number: lock, journal, snapshot, compose up, verify; roll back when any of that fails.

    Raise OpsError if a prerequisite is missing or the lock is held (nothing changed then), if the
    snapshot fails (nothing changed either), or if the automatic rollback fails (journaled
    rollback-failed). Raise Interrupted on SIGTERM, SIGHUP or SIGINT, after releasing the lock.
    """
    module = get_slice(number)
    plan = run_plan(runtime, number)
    if dry_run:
        return ApplyReport(number, "dry-run", changed=plan.compose_actions)
    runtime.compose.up(["postgres"])  # the journal and the lock live there
    journal = Journal(runtime.psql)
    resume = f"run the apply again (it is idempotent) or `ops slice {number} --rollback`"
    with signals_as_exceptions(), Lock(runtime.psql, f"apply slice {number}"):
        _require_prerequisites(journal, module)
        with _journaled(journal, number, "apply", plan.hash, resume) as row:
            row.step = "the safety snapshot"
            try:
                snapshot = take_snapshot(runtime, plan, "apply")
            except Exception as exc:
                detail = f"{_failure('the safety snapshot', exc)}; nothing was changed, so there is nothing to roll back"
                row.finish("failed", detail)
                raise OpsError(f"slice {number}: {detail}") from exc
            changed: list[str] = []
            checks: list[Check] = []
            error = ""  # a step that raised (not a failed check)
            try:
                row.step = "reading the containers"
                before = {s: c.container_id for s, c in runtime.compose.ps().items() if c.running}
                last_good = _last_good(runtime.settings, number)
                # a bind-mounted file that changed is not a compose change: recreate so the service reads it
                files_changed = (
                    last_good is not None
                    and json.loads((last_good / "state.json").read_text()).get("digest") != plan.files_digest
                )
                if plan.services:
                    row.step = f"docker compose up {' '.join(plan.services)}"
                    runtime.compose.up(plan.services, force_recreate=files_changed)
                row.step = "the install step"
                installed = module.install(runtime.settings) if hasattr(module, "install") else []
                row.step = "reading the containers"
                after = {s: c.container_id for s, c in runtime.compose.ps().items() if c.running}
                changed = [s for s in plan.services if before.get(s) != after.get(s)] + installed
                row.step = "verify"
                checks = module.verify(runtime.target)
                failed = "; ".join(f"{c.name}: {c.detail}" for c in checks if not c.ok)
                failure = f"verify failed ({failed})" if failed else ""
            except Exception as exc:
                failure = error = _failure(row.step, exc)
            if not failure:
                _keep_last_good(runtime.settings, plan, snapshot.name if changed else None)
                row.finish("ok", json.dumps({"changed": changed, "snapshot": snapshot.name if changed else ""}))
                if not changed:
                    shutil.rmtree(snapshot)  # nothing changed: nothing to roll back to
                prune_snapshots(runtime.settings, number)
                return ApplyReport(number, "ok" if changed else "unchanged", changed, checks, snapshot.name if changed else "")
            row.step = f"the automatic rollback (after: {failure})"
            try:
                rollback = _rollback_to(runtime, plan, snapshot, files_from=_last_good(runtime.settings, plan.number))
            except Exception as exc:
                detail = f"{failure}; the automatic rollback to {snapshot.name} failed too: {_reason(exc)}"
                row.finish("rollback-failed", detail)
                raise OpsError(
                    f"slice {number}: {detail}. Its state is unknown: fix the cause, then run `ops slice {number} --rollback`"
                ) from exc
            row.finish("rolled-back", f"{failure}; restored {snapshot.name}")
            return ApplyReport(number, "rolled-back", changed, checks, snapshot.name, rollback, error)


def run_verify(runtime: Runtime, number: int) -> VerifyReport:
    """Verify slice number against the running stack, under the lock, and journal the outcome.

    A verify that raises is a failed check (journaled failed), not a crash. Raise OpsError if the
    lock is held, and Interrupted on SIGTERM, SIGHUP or SIGINT (slice 5's drill restores the key first).
    """
    module = get_slice(number)
    journal = Journal(runtime.psql)
    with (
        signals_as_exceptions(),
        Lock(runtime.psql, f"verify slice {number}"),
        _journaled(journal, number, "verify", resume=f"run `ops slice {number} --verify` again") as row,
    ):
        row.step = "verify"
        try:
            checks = module.verify(runtime.target)
        except Exception as exc:
            checks = [Check("verify", False, _failure("verify", exc))]
        report = VerifyReport(number, module.TITLE, checks)
        row.finish("ok" if report.ok else "failed", "; ".join(f"{c.name}: {c.detail}" for c in report.checks if not c.ok))
        return report


def run_rollback(runtime: Runtime, number: int) -> RollbackReport:
    """Roll slice number back to the snapshot of its latest apply (saving the current state first).

    Raise OpsError if there is no complete snapshot or the lock is held (nothing changed then), or
    if the rollback fails (journaled rollback-failed). Raise Interrupted on SIGTERM, SIGHUP or SIGINT.
    """
    module = get_slice(number)
    latest_snapshot(runtime.settings, number)  # a clear error before touching anything
    journal = Journal(runtime.psql)
    with signals_as_exceptions(), Lock(runtime.psql, f"rollback slice {number}"):
        snapshot = latest_snapshot(runtime.settings, number)
        with _journaled(journal, number, "rollback", resume=f"run `ops slice {number} --rollback` again") as row:
            row.step = f"the rollback to {snapshot.name}"
            plan = Plan(number, module.TITLE, module.REQUIRES, module.SERVICES, module.FILES, module.DATABASES)
            try:
                report = _rollback_to(runtime, plan, snapshot)
            except Exception as exc:
                detail = _failure(row.step, exc)
                row.finish("rollback-failed", detail)
                raise OpsError(f"slice {number}: {detail}; the snapshot is kept, fix the cause and run it again") from exc
            row.finish("ok", f"restored {snapshot.name}; current state saved to {report.saved_to}")
            snapshot.rename(snapshot.with_name(snapshot.name + "-restored"))
            return report


def _last_good(settings: Settings, number: int) -> Path | None:
    """The slice's files as of its latest verified apply, or None if it never passed."""
    directory = settings.project_dir / ".ops" / "applied" / f"slice{number:02d}"
    return directory if (directory / "state.json").exists() else None


def _keep_last_good(settings: Settings, plan: Plan, snapshot: str | None) -> None:
    """Keep the slice's files as its last verified version, with the snapshot taken before the apply that made
    them (snapshot None: unchanged, the previous one still is)."""
    directory = settings.project_dir / ".ops" / "applied" / f"slice{plan.number:02d}"
    if snapshot is None and (directory / "state.json").exists():
        snapshot = json.loads((directory / "state.json").read_text()).get("snapshot")
    shutil.rmtree(directory, ignore_errors=True)
    _private_dir(directory.parent)
    _private_dir(directory)
    _private_dir(directory / "files")
    present, modes = {}, {}
    for name in plan.files:
        source = settings.project_dir / name
        present[name] = source.exists()
        if source.exists():
            modes[name] = source.stat().st_mode & 0o777
            _private_copy(source, directory / "files" / name)
    state = {"files": present, "modes": modes, "digest": plan.files_digest, "snapshot": snapshot}
    _private_text(directory / "state.json", json.dumps(state))


def _rollback_to(runtime: Runtime, plan: Plan, snapshot: Path, files_from: Path | None = None) -> RollbackReport:
    """Return the slice to snapshot: save the current state, stop its services, restore databases and files, restart.

    Files come from files_from (the last verified apply) when given: after a
    failed verify the snapshot holds the very edit that failed.
    """
    state = json.loads((snapshot / "state.json").read_text())
    files_source = json.loads(((files_from or snapshot) / "state.json").read_text())
    files_state, modes = files_source["files"], files_source.get("modes", {})
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
            mode = modes.get(name) or (target.stat().st_mode & 0o777 if target.exists() else 0o644)
            shutil.copy2(files_dir / name, target)
            target.chmod(mode)  # the file's own mode, not its private copy's 0600
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
    detail: str = ""
    hint: str = ""  # what to do next, for a state that needs the operator

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def status_hint(number: int, entry: Entry) -> str:
    """Given a slice's latest operation (outcome effective), return the operator's next step, or ""."""
    if entry.outcome == "interrupted":
        again = {"apply": f"make slice-{number}", "verify": f"ops slice {number} --verify"}.get(entry.action)
        return f"it was killed: run `{again or f'ops slice {number} --{entry.action}'}` again or `ops slice {number} --rollback`"
    if entry.outcome == "rollback-failed":
        return f"its state is unknown: fix the cause in the detail, then run `ops slice {number} --rollback`"
    if entry.outcome == "running":
        return f"running now (pid {entry.pid} on {entry.host})"
    return ""


def run_status(runtime: Runtime) -> list[SliceStatus]:
    """Each slice's latest journaled operation (or 'never run'); a killed one reads interrupted."""
    states = Journal(runtime.psql).slice_states()
    out = []
    for number, module in sorted(registered().items()):
        entry = states.get(number)
        if entry is None:
            out.append(SliceStatus(number, module.TITLE, "never run", ""))
            continue
        label = f"{entry.action} {entry.outcome}"
        out.append(SliceStatus(number, module.TITLE, label, entry.started_at, entry.detail, status_hint(number, entry)))
    return out
