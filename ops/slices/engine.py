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
0600 files: the dumps hold the databases). After every apply, whatever its
outcome, the newest KEEP_SNAPSHOTS of each slice are kept (and the one its last
verified state came from); a ``before-rollback`` snapshot (the only copy of
what a rollback replaced) is kept BEFORE_ROLLBACK_DAYS whatever the count; only
``.partial`` directories are deleted as incomplete, any other unreadable one is
kept and named. An apply whose automatic rollback succeeded renames its
snapshot ``...-apply-rolled-back``, so a later ``--rollback`` goes back past the
last verified apply, not to the state it already restored.

Every operation holds the operator lock and turns SIGTERM, SIGHUP and SIGINT
into an exception (ops.interrupts), so a dropped ssh session still releases
the lock, journals ``interrupted`` and ends the slice-5 drill with the real
key. A rollback (automatic or by hand) runs shielded: a signal waits until
it has finished, since a half-restored database is worse than a late stop.
If one of its steps dies anyway (a dropped session kills the whole process
group, pg_restore included), the journal says ``rollback-failed`` and the
slice cannot be applied again until ``--rollback`` succeeds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any

from ops.backup.context import PostgresAccess
from ops.config import Settings
from ops.errors import ConfigError, OpsError, ServiceError
from ops.interrupts import Interrupted, shielded, signals_as_exceptions
from ops.journal import Entry, Journal, Lock, Psql, satisfies_prerequisite
from ops.runtime.compose import Compose
from ops.runtime.postgres_volume import require_startable_volume
from ops.slices import VerifyReport, get_slice, registered
from ops.slices.base import Check, Target

if TYPE_CHECKING:
    from ops.workflows.n8n import N8n


@dataclass(frozen=True)
class Runtime:
    """What the engine acts on: compose for the stack, psql into its Postgres, and the verify target.

    postgres None: pg_dump and pg_restore run in the stack's postgres container (which apply
    starts first); set, they run as it says (a Postgres on this machine: tests, local mode).
    """

    settings: Settings
    compose: Compose
    psql: Psql
    target: Target
    postgres: PostgresAccess | None = None
    n8n: N8n | None = None  # None: the stack's n8n service (its CLI through compose); set: a local n8n (tests)

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
                # force_recreate: a `docker compose up` killed mid-recreate can leave the old container
                # restarted behind a port mapping that resets every connection; a new one has clean mappings
                compose.up(["litellm"], force_recreate=True)

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
    notes: list[str] = field(default_factory=list)  # snapshots pruned, or kept though unreadable

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
            "notes": self.notes,
        }


@dataclass
class RollbackReport:
    number: int
    snapshot: str
    saved_to: str
    steps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "slice": self.number,
            "snapshot": self.snapshot,
            "saved_to": self.saved_to,
            "saved_for_days": BEFORE_ROLLBACK_DAYS,
            "steps": self.steps,
        }


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
BEFORE_ROLLBACK_DAYS = 30  # what a rollback replaced is kept this long, however many snapshots follow
PARTIAL = ".partial"
ROLLED_BACK = "-rolled-back"  # an apply whose automatic rollback restored this snapshot
RESTORED = "-restored"  # restored by `--rollback`
SNAPSHOT_NAME = re.compile(r"^(?P<stamp>\d{8}T\d+Z)-slice(?P<slice>\d{2})-(?P<action>.+?)(?P<partial>\.partial)?$")
STAMP = "%Y%m%dT%H%M%S%fZ"


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


def _pg(runtime: Runtime, program: str, *args: str, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> None:
    """Run a Postgres client program as the superuser (in the postgres container, or as runtime.postgres says).

    Raise ServiceError if it fails or does not finish within an hour.
    """
    if runtime.postgres is None:
        runtime.compose.stream("exec", "-T", "postgres", program, "-U", "postgres", *args, stdin=stdin, stdout=stdout)
        return
    command = runtime.postgres.command(program, *args)
    try:
        proc = subprocess.run(
            command.argv,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env={**os.environ, **dict(command.env)},
            timeout=3600,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(f"{program} did not finish within 3600 s") from exc
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip()[-600:] or f"exit status {proc.returncode}"
        raise ServiceError(f"{program} failed: {reason}")


def save_files(project: Path, names: Iterable[str], target: Path) -> tuple[dict[str, bool], dict[str, int]]:
    """Given the project, file names relative to it and a directory, copy each existing file under target
    (private: 0600 files, 0700 directories); return which existed and each one's own mode (restore_files
    gives it back)."""
    present: dict[str, bool] = {}
    modes: dict[str, int] = {}
    for name in names:
        source = project / name
        present[name] = source.exists()
        if source.exists():
            modes[name] = source.stat().st_mode & 0o777  # the copy is 0600; a restore gives this back
            _private_copy(source, target / name)
    return present, modes


def record_target(project: Path, name: str) -> Path:
    """Given the project and a file name read from a record (a state.json), return the file's path in the project.

    Raise ConfigError if the name is absolute, holds `..`, resolves outside the project (a symlinked directory)
    or is a symlink: a record can come back from a backup (`ops recover`), and restoring it must never write
    or delete outside the project.
    """
    relative = Path(name)
    if not name or relative.is_absolute() or ".." in relative.parts:
        raise ConfigError(f"a record names the file {name!r}, which is not a path inside the project: move that record aside")
    target = project / relative
    if target.is_symlink():
        raise ConfigError(
            f"a record names the file {name!r}, which is a symlink in the project: restoring would write through it"
        )
    if not target.resolve().is_relative_to(project.resolve()):
        raise ConfigError(f"a record names the file {name!r}, which resolves outside the project: move that record aside")
    return target


def restore_files(project: Path, present: dict[str, bool], modes: dict[str, Any], source: Path) -> tuple[list[str], list[str]]:
    """Given the project and what save_files returned for source, put each file back as it was saved: copied
    back with its own mode, or removed when it did not exist; return (restored, removed) names. A file
    already equal to its saved copy is left alone (and not named). Raise ConfigError, before changing anything,
    if a name is not a plain file inside the project (see record_target)."""
    for name in present:
        record_target(project, name)
    restored, removed = [], []
    for name, existed in present.items():
        target = record_target(project, name)
        if existed:
            if target.exists() and target.read_bytes() == (source / name).read_bytes():
                continue
            mode = modes.get(name) or (target.stat().st_mode & 0o777 if target.exists() else 0o644)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target)
            target.chmod(mode)  # the file's own mode, not its private copy's 0600
            restored.append(name)
        elif target.exists():
            target.unlink()
            removed.append(name)
    return restored, removed


def _dump(runtime: Runtime, database: str, target: Path) -> None:
    _private_dir(target.parent)
    with open(target, "wb", opener=lambda path, flags: os.open(path, flags, 0o600)) as out:
        _pg(runtime, "pg_dump", "-Fc", database, stdout=out)


def take_snapshot(runtime: Runtime, plan: Plan, action: str) -> Path:
    """Save the slice's files, databases and container states under .ops/snapshots; return the directory.

    It is written as ``<name>.partial`` and renamed when complete. Raise (OpsError from a
    failed dump) after removing the partial directory; a killed process leaves only a
    ``.partial`` one, which no rollback picks.
    """
    stamp = datetime.now(UTC).strftime(STAMP)
    directory = runtime.settings.snapshots_dir / f"{stamp}-slice{plan.number:02d}-{action}"
    partial = directory.with_name(directory.name + PARTIAL)
    _private_dir(runtime.settings.snapshots_dir)  # the dumps hold the databases: only their owner reads them
    try:
        _private_dir(partial)
        _private_dir(partial / "files")
        state: dict[str, Any] = {"slice": plan.number, "files": {}, "modes": {}, "databases": {}, "containers": {}}
        state["files"], state["modes"] = save_files(runtime.settings.project_dir, plan.files, partial / "files")
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
    action: str  # apply | before-rollback | apply-restored | apply-rolled-back
    complete: bool
    problem: str = ""  # why it is not complete: "partial", or what is missing or unreadable

    @property
    def taken_at(self) -> datetime | None:
        match = SNAPSHOT_NAME.match(self.name)
        try:
            return datetime.strptime(match["stamp"], STAMP).replace(tzinfo=UTC) if match else None
        except ValueError:
            return None


def snapshot_problem(directory: Path) -> str:
    """Given a snapshot directory, return "" if it was finished (not .partial, its state.json parses
    with the shape this ops writes, and every file and database dump it lists is there), else why not."""
    if directory.name.endswith(PARTIAL):
        return "partial"
    try:
        state = json.loads((directory / "state.json").read_text())
    except OSError:
        return "no state.json"
    except ValueError:
        return "state.json does not parse"
    if not isinstance(state, dict) or not all(isinstance(state.get(key), dict) for key in ("files", "databases", "containers")):
        return "state.json has a shape this ops does not know (a newer ops wrote it?)"
    missing = [
        f"files/{name}" for name, present in state["files"].items() if present and not (directory / "files" / name).is_file()
    ]
    missing += [
        f"databases/{database}.dump"
        for database, present in state["databases"].items()
        if present and not (directory / "databases" / f"{database}.dump").is_file()
    ]
    return f"missing {', '.join(missing)}" if missing else ""


def snapshot_complete(directory: Path) -> bool:
    """Given a snapshot directory, return True if it was finished (see snapshot_problem)."""
    return not snapshot_problem(directory)


def list_snapshots(settings: Settings, number: int) -> list[SnapshotInfo]:
    """Return slice number's snapshots, oldest first, each marked complete or not (and why not)."""
    found = []
    for path in settings.snapshots_dir.iterdir() if settings.snapshots_dir.is_dir() else ():
        match = SNAPSHOT_NAME.match(path.name)
        if match and path.is_dir() and int(match["slice"]) == number:
            problem = snapshot_problem(path)
            found.append(SnapshotInfo(path.name, number, match["action"], not problem, problem))
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


def rollback_warning(settings: Settings, number: int) -> str:
    """Given a slice, return what its rollback would replace, for the operator's confirmation.

    A slice with databases (1: litellm, 4: n8n) restores them whole from its apply's snapshot:
    what anyone wrote to them since (keys and spend, workflows, credentials, executions) goes
    with it. Raise OpsError if there is no snapshot to roll back to.
    """
    snapshot = latest_snapshot(settings, number)
    databases = get_slice(number).DATABASES
    if not databases:
        return f"rollback slice {number} to {snapshot.name}?"
    return (
        f"rollback slice {number} to {snapshot.name}? This restores the database(s) {', '.join(databases)} "
        f"as they were then: everything written to them since is replaced (the current state is kept as a "
        f"before-rollback snapshot for {BEFORE_ROLLBACK_DAYS} days)."
    )


@dataclass
class Pruning:
    """What pruning one slice's snapshots decided: the names to delete, and a line for the operator on each
    deletion that is not routine and each snapshot kept although it cannot be used."""

    delete: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def snapshots_to_prune(
    snapshots: list[SnapshotInfo],
    keep: int,
    needed: frozenset[str] = frozenset(),
    now: datetime | None = None,
    before_rollback_days: int = BEFORE_ROLLBACK_DAYS,
) -> Pruning:
    """Given one slice's snapshots (oldest first), return which to delete, and what to tell the operator.

    A ``.partial`` one goes (only an operation holding the lock writes one, and it has ended).
    A ``before-rollback`` one (what a rollback replaced) goes only when older than
    before_rollback_days. Of the other complete ones the newest keep stay, and so do those
    in needed. Any other incomplete one (a state.json this ops cannot read, a missing dump)
    is kept and named: it may be a newer ops's, or the only copy of something.
    """
    now = now or datetime.now(UTC)
    pruning = Pruning()
    counted = [s.name for s in snapshots if s.complete and s.action != "before-rollback"]
    kept = set(counted[-keep:] if keep > 0 else []) | needed
    for snapshot in snapshots:
        if snapshot.problem == "partial":
            pruning.delete.append(snapshot.name)
        elif not snapshot.complete:
            pruning.notes.append(f"kept {snapshot.name}, which no rollback can use ({snapshot.problem}): delete it by hand")
        elif snapshot.action == "before-rollback":
            taken = snapshot.taken_at
            if taken is not None and now - taken > timedelta(days=before_rollback_days):
                pruning.delete.append(snapshot.name)
                pruning.notes.append(f"deleted {snapshot.name}: what a rollback replaced is kept {before_rollback_days} days")
        elif snapshot.name not in kept:
            pruning.delete.append(snapshot.name)
    return pruning


def prune_snapshots(settings: Settings, number: int, keep: int = KEEP_SNAPSHOTS, now: datetime | None = None) -> Pruning:
    """Delete slice number's .partial, surplus and expired snapshots (never the last verified state's); return
    what was deleted and what to tell the operator (see snapshots_to_prune)."""
    last_good = _last_good(settings, number)
    needed = json.loads((last_good / "state.json").read_text()).get("snapshot") if last_good else None
    pruning = snapshots_to_prune(list_snapshots(settings, number), keep, frozenset([needed] if needed else []), now)
    for name in pruning.delete:
        shutil.rmtree(settings.snapshots_dir / name, ignore_errors=True)
    return pruning


def _prune_after_apply(settings: Settings, number: int) -> list[str]:
    """Prune after an apply, whatever its outcome (under the lock, so no .partial is being written);
    return the operator's notes. A failure to prune is a note, never the apply's error."""
    try:
        with shielded():  # a half-deleted snapshot would read as damaged forever after
            return prune_snapshots(settings, number).notes
    except (OSError, ValueError) as exc:
        return [f"pruning slice {number}'s snapshots failed: {type(exc).__name__}: {exc}"]


def prerequisite_problem(number: int, requires: tuple[int, ...], states: dict[int, Entry]) -> str | None:
    """Given a slice's prerequisites and each slice's latest operation, return why it may not be applied, or None.

    A slice whose own latest rollback failed (its state is unknown) may not be applied until
    `--rollback` succeeds: an apply would snapshot the half-restored state as its baseline.
    """
    own = states.get(number)
    if own is not None and own.outcome == "rollback-failed":
        return (
            f"slice {number}'s last rollback did not finish (`{own.action} rollback-failed`), so its state is unknown: "
            f"run `ops slice {number} --rollback` first; applying is refused until a rollback succeeds"
        )
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


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_ops_dirs(settings: Settings, number: int) -> None:
    """Check that this user can write and chmod every .ops directory an operation on slice number
    writes: .ops, its snapshots, .ops/applied and the slice's recorded files.

    Raise OpsError naming the first one it cannot (another user's, after `sudo make slice-N`), with the fix.
    Run before anything changes, so an apply never fails after a verify that passed.
    """
    ops_dir = settings.project_dir / ".ops"
    applied = ops_dir / "applied" / f"slice{number:02d}"
    require_writable_dirs(settings, [ops_dir, settings.snapshots_dir, ops_dir / "applied", applied])


def require_writable_dirs(settings: Settings, paths: list[Path]) -> None:
    """Given .ops directories an operation writes (and so the directories under the last one), check this
    user can write and chmod each. Raise OpsError naming the first it cannot, with the fix (see check_ops_dirs)."""
    uid = os.geteuid()
    ops_dir = settings.project_dir / ".ops"
    with contextlib.suppress(OSError):
        paths = [*paths, *sorted(p for p in paths[-1].rglob("*") if p.is_dir())]
    for path in paths:
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        if (uid != 0 and info.st_uid != uid) or not os.access(path, os.W_OK | os.X_OK):  # chmod needs the owner
            me, owner = _owner_name(uid), _owner_name(info.st_uid)
            raise OpsError(
                f"{path} belongs to {owner} (mode {info.st_mode & 0o777:o}) and ops, running as {me}, must write there: "
                f"nothing was changed. Run every ops command as the same user: `sudo chown -R {me}: {ops_dir}`, "
                f"or run this one as {owner}"
            )


@dataclass
class _Row:
    """One journal row being written: the step under way, and whether it was finished."""

    journal: Journal
    id: int
    step: str = "starting"
    done: bool = False

    def mark(self, outcome: str, detail: str) -> None:
        with shielded():
            self.journal.mark(self.id, outcome, detail)

    def finish(self, outcome: str, detail: str) -> None:
        with shielded():
            self.journal.finish(self.id, outcome, detail)
        self.done = True


@contextlib.contextmanager
def _journaled(journal: Journal, number: int | None, action: str, plan_hash: str = "", resume: str = "") -> Iterator[_Row]:
    """Journal an operation (of slice number; None: of the whole stack, `ops deploy`) as running; if it ends
    without a recorded outcome, record interrupted or failed."""
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

    Raise OpsError if a prerequisite is missing, the slice's last rollback failed, the lock is held
    or an .ops directory is another user's (nothing changed then), if the snapshot fails (nothing
    changed either), or if the automatic rollback fails (journaled rollback-failed). Raise Interrupted
    on SIGTERM, SIGHUP or SIGINT, after releasing the lock (during a rollback: once it has finished).
    """
    module = get_slice(number)
    plan = run_plan(runtime, number)
    if dry_run:
        return ApplyReport(number, "dry-run", changed=plan.compose_actions)
    check_ops_dirs(runtime.settings, number)
    if runtime.postgres is None:
        require_startable_volume(runtime.compose)  # an older major's volume: refuse before compose recreates postgres
        runtime.compose.up(["postgres"])  # the journal and the lock live there
    journal = Journal(runtime.psql)
    with signals_as_exceptions(), Lock(runtime.psql, f"apply slice {number}"):
        _require_prerequisites(journal, module)
        try:
            report = _apply(runtime, journal, module, plan)
        finally:
            notes = _prune_after_apply(runtime.settings, number)
        report.notes += notes
        return report


def _apply(runtime: Runtime, journal: Journal, module: ModuleType, plan: Plan) -> ApplyReport:
    """The journaled part of run_apply, under the lock."""
    number = plan.number
    resume = f"run the apply again (it is idempotent) or `ops slice {number} --rollback`"
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
            before = {s: c.container_id for s, c in runtime.compose.ps().items() if c.running} if plan.services else {}
            last_good = _last_good(runtime.settings, number)
            # a bind-mounted file that changed is not a compose change: recreate so the service reads it
            files_changed = (
                last_good is not None and json.loads((last_good / "state.json").read_text()).get("digest") != plan.files_digest
            )
            if plan.services:
                row.step = f"docker compose up {' '.join(plan.services)}"
                runtime.compose.up(plan.services, force_recreate=files_changed)
            row.step = "the install step"
            installed = module.install(runtime.settings) if hasattr(module, "install") else []
            # what a slice puts into its running services (slice 4: n8n's workflow); apply only: a rollback
            # restores the slice's databases, which removes it
            row.step = "the deploy step"
            installed += module.deploy(runtime) if hasattr(module, "deploy") else []
            row.step = "reading the containers"
            after = {s: c.container_id for s, c in runtime.compose.ps().items() if c.running} if plan.services else {}
            changed = [s for s in plan.services if before.get(s) != after.get(s)] + installed
            row.step = "verify"
            checks = module.verify(runtime.target)
            failed = "; ".join(f"{c.name}: {c.detail}" for c in checks if not c.ok)
            failure = f"verify failed ({failed})" if failed else ""
        except Exception as exc:
            failure = error = _failure(row.step, exc)
        if not failure:
            row.step = "recording the verified state"
            with shielded():  # a signal now waits: the change is live and verified, record it whole
                _record_applied(runtime.settings, plan, snapshot.name if changed else _applied_snapshot(runtime.settings, number))
                row.finish("ok", json.dumps({"changed": changed, "snapshot": snapshot.name if changed else ""}))
                if not changed:
                    shutil.rmtree(snapshot)  # nothing changed: nothing to roll back to
            return ApplyReport(number, "ok" if changed else "unchanged", changed, checks, snapshot.name if changed else "")
        row.step = f"the automatic rollback (after: {failure})"
        with shielded():  # a signal waits until the rollback has finished: a half-restored database is worse
            row.mark("rolling-back", f"{failure}; rolling back to {snapshot.name}")
            try:
                rollback = _rollback_to(runtime, plan, snapshot, files_from=_last_good(runtime.settings, plan.number))
            except Exception as exc:
                detail = f"{failure}; the automatic rollback to {snapshot.name} failed too: {_reason(exc)}"
                row.finish("rollback-failed", detail)
                raise OpsError(
                    f"slice {number}: {detail}. Its state is unknown: fix the cause, then run `ops slice {number} --rollback`"
                ) from exc
            row.finish("rolled-back", f"{failure}; restored {snapshot.name}")
            # this state is restored already: a later --rollback must go back past the last verified apply
            rolled = snapshot.rename(snapshot.with_name(snapshot.name + ROLLED_BACK))
        return ApplyReport(number, "rolled-back", changed, checks, rolled.name, rollback, error)


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

    The restored files become the slice's recorded state (.ops/applied), so a later failed apply
    rolls back to them. Raise OpsError if there is no complete snapshot, the lock is held or an .ops
    directory is another user's (nothing changed then), or if the rollback fails (journaled
    rollback-failed). Raise Interrupted on SIGTERM, SIGHUP or SIGINT: once the rollback has finished.
    """
    module = get_slice(number)
    latest_snapshot(runtime.settings, number)  # a clear error before touching anything
    check_ops_dirs(runtime.settings, number)
    journal = Journal(runtime.psql)
    with signals_as_exceptions(), Lock(runtime.psql, f"rollback slice {number}"):
        snapshot = latest_snapshot(runtime.settings, number)
        with _journaled(journal, number, "rollback", resume=f"run `ops slice {number} --rollback` again") as row:
            row.step = f"the rollback to {snapshot.name}"
            plan = Plan(number, module.TITLE, module.REQUIRES, module.SERVICES, module.FILES, module.DATABASES)
            with shielded():  # a signal waits until the rollback has finished: a half-restored database is worse
                row.mark("rolling-back", f"rolling back to {snapshot.name}")
                try:
                    report = _rollback_to(runtime, plan, snapshot)
                except Exception as exc:
                    detail = _failure(row.step, exc)
                    row.finish("rollback-failed", detail)
                    raise OpsError(f"slice {number}: {detail}; the snapshot is kept, fix the cause and run it again") from exc
                row.finish("ok", f"restored {snapshot.name}; current state saved to {report.saved_to}")
                snapshot.rename(snapshot.with_name(snapshot.name + RESTORED))
                plan.files_digest = _files_digest(runtime.settings, plan.files)
                _record_applied(runtime.settings, plan, None)  # the stack runs these files now; no apply to go back past
            return report


def _applied_dir(settings: Settings, number: int) -> Path:
    return settings.project_dir / ".ops" / "applied" / f"slice{number:02d}"


def _last_good(settings: Settings, number: int) -> Path | None:
    """The slice's files as the stack last ran them (after a verified apply, or a rollback by hand), or None."""
    directory = _applied_dir(settings, number)
    return directory if (directory / "state.json").exists() else None


def _applied_snapshot(settings: Settings, number: int) -> str | None:
    """The snapshot taken before the apply that made the recorded state, or None."""
    last_good = _last_good(settings, number)
    snapshot = json.loads((last_good / "state.json").read_text()).get("snapshot") if last_good else None
    return snapshot if isinstance(snapshot, str) else None


def _record_applied(settings: Settings, plan: Plan, snapshot: str | None) -> None:
    """Record the slice's files as the stack runs them now (after a verified apply, or a rollback by hand),
    with the snapshot taken before the apply that made them (None: no apply to go back past)."""
    directory = _applied_dir(settings, plan.number)
    shutil.rmtree(directory, ignore_errors=True)
    _private_dir(directory.parent)
    _private_dir(directory)
    _private_dir(directory / "files")
    present, modes = save_files(settings.project_dir, plan.files, directory / "files")
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
                _pg(runtime, "pg_restore", "--clean", "--if-exists", "-d", database, stdin=dump)
            report.steps.append(f"restored database {database}")
        elif _database_exists(psql, database):
            psql.query("SELECT format('DROP DATABASE %I WITH (FORCE)', :'db') \\gexec", db=database)
            report.steps.append(f"dropped database {database} (saved in {saved.name})")
    restored, removed = restore_files(project, files_state, modes, files_dir)
    report.steps += [f"restored {name}" + (" (last verified version)" if files_from else "") for name in restored]
    report.steps += [f"removed {name} (saved in {saved.name})" for name in removed]
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
    rollback = f"ops slice {number} --rollback"
    if entry.outcome == "interrupted" and entry.action == "rollback":  # stopped before it changed anything
        return f"it was killed: run `{rollback}` again"
    if entry.outcome == "interrupted":
        again = {"apply": f"make slice-{number}", "verify": f"ops slice {number} --verify"}.get(entry.action)
        return f"it was killed: run `{again or f'ops slice {number} --{entry.action}'}` again or `{rollback}`"
    if entry.outcome == "rollback-failed":
        return f"its state is unknown: fix the cause in the detail, then run `{rollback}` (applying is refused until then)"
    if entry.outcome == "running":
        return f"running now (pid {entry.pid} on {entry.host})"
    if entry.outcome == "rolling-back":
        return f"rolling back now (pid {entry.pid} on {entry.host})"
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
