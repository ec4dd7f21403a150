"""A new image for n8n, Langfuse (web and worker together), LiteLLM, or Postgres within its major.

The service is stopped, its data copied (ops.upgrade.copy), its image line changed, and the new
image started and health-gated. A Postgres minor release starts on the same data files: the
applications that use Postgres are stopped while the databases are copied, and started again
(and gated, those that passed `ops health` before) once the new server passes. On any failure
the old line is written back, the copy restored and checked, and the old image started and gated.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from ops.backup.sources.postgres import databases as list_databases
from ops.errors import OpsError
from ops.files import read_text
from ops.health import run_health
from ops.images import _replace_file
from ops.interrupts import Interrupted, shielded, signals_as_exceptions
from ops.journal import Journal, Lock
from ops.runtime.gate import wait_healthy
from ops.slices.engine import _failure, _journaled, _private_dir, _private_text, _reason, _Row, require_writable_dirs
from ops.upgrade import Context, UpgradeReport
from ops.upgrade.copy import LocalCopy, restore_copy, take_copy
from ops.upgrade.plan import (
    POSTGRES_CLIENTS,
    ImageLine,
    Kind,
    UpgradeError,
    Version,
    check_newer,
    current_version,
    image_lines,
    new_reference,
    plan_hash,
    probes_for,
    require_unchanged,
    rewritten_files,
)


def mark_quietly(row: _Row, outcome: str, detail: str) -> None:
    """Journal a phase if Postgres answers (it may be the service being replaced): a journal line is not worth a rollback."""
    with contextlib.suppress(OpsError):
        row.mark(outcome, detail)


def finish_quietly(row: _Row, outcome: str, detail: str) -> None:
    """Finish the journal row if Postgres answers; else leave it (it then reads interrupted) and go on."""
    try:
        row.finish(outcome, detail)
    except OpsError:
        row.done = True


def ensure_image(ctx: Context, ref: str) -> str:
    """Given an image reference, pull it unless the engine has it; return what was done. Raise ServiceError if the pull fails."""
    if ctx.docker.ok("image", "inspect", ref):
        return f"{ref} is on the engine already (no pull)"
    ctx.docker.run("pull", ref, timeout=1800)
    return f"pulled {ref}"


def checked_lines(ctx: Context, kind: Kind) -> dict[str, ImageLine]:
    """Given the kind, return its image lines, checked against what compose runs.

    Raise UpgradeError if a service is not in the stack (its profile off) or compose's image is not the line's.
    """
    services = ctx.config.get("services") or {}
    absent = [s for s in dict.fromkeys((*kind.image_services, *kind.start)) if s not in services]
    if absent:
        raise UpgradeError(
            f"{', '.join(absent)} is not in the stack as configured (a profile off in COMPOSE_PROFILES?): nothing to upgrade"
        )
    files = (ctx.settings.compose_file, *ctx.settings.compose_overrides)
    lines = image_lines(files, kind.image_services)
    for service, line in lines.items():
        if ctx.image_of(service) != line.ref.text:
            raise UpgradeError(
                f"compose runs {ctx.image_of(service)!r} for {service}, but {line.path.name} line {line.index + 1} says "
                f"{line.ref.text!r} (a variable?): ops upgrade changes a literal image line only"
            )
    return lines


def run(ctx: Context, kind: Kind, to: Version, dry_run: bool) -> UpgradeReport:
    """Given the context, a kind and the new version, upgrade (see ops.upgrade.run_upgrade); return the report."""
    lines = checked_lines(ctx, kind)
    current = current_version(kind, lines)
    check_newer(kind, current, to)
    new_refs = {service: new_reference(line.ref, to) for service, line in lines.items()}
    texts = rewritten_files(lines, new_refs)
    planned = {path: read_text(path) for path in texts}  # checked again under the lock (require_unchanged)
    postgres = kind.name == "postgres"
    report = UpgradeReport(
        kind.name,
        current.tag,
        to.tag,
        "postgres minor" if postgres else "new image",
        "dry-run",
        images=[{**line.to_dict(), "new": new_refs[s]} for s, line in lines.items()],
    )
    if dry_run:
        report.steps = _planned(ctx, kind, sorted(set(new_refs.values())))
        return report
    report.steps += [ensure_image(ctx, ref) for ref in sorted(set(new_refs.values()))]
    ctx.compose.up(["postgres"])  # the journal and the lock live there
    ops_dir = ctx.settings.project_dir / ".ops"
    require_writable_dirs(ctx.settings, [ops_dir, ops_dir / "upgrades"])
    journal = Journal(ctx.psql)
    resume = f"run `ops upgrade {kind.name} --to {to}` again, or restore the copy by hand"
    with (
        signals_as_exceptions(),
        Lock(ctx.psql, f"upgrade {kind.name} {current} -> {to}"),
        _journaled(journal, None, "upgrade", plan_hash(kind.name, current.tag, to.tag, texts), resume) as row,
    ):
        _upgrade(ctx, kind, texts, planned, row, report)
    return report


def _planned(ctx: Context, kind: Kind, refs: list[str]) -> list[str]:
    postgres = kind.name == "postgres"
    stop = "the applications using Postgres" if postgres else ", ".join(kind.stop)
    data = "every application database" if postgres else ", ".join([*kind.databases, *kind.volumes])
    steps = [f"pull {ref} unless the engine has it" for ref in refs]
    if ctx.settings.effective_env.get("OPS_BACKUP_BUCKET"):
        steps.append("back Postgres up to the bucket (ops backup run --source postgres)")
    steps += [
        f"stop {stop}; copy {data} to .ops/upgrades/",
        "write the new image line(s) above",
        f"start {', '.join(kind.start)} and wait up to {ctx.timeout:g} s for ops health ({', '.join(kind.probes)})",
        "on failure: the old line back, the copy restored and checked, the old image started and health-gated",
    ]
    return steps


def _upgrade(
    ctx: Context, kind: Kind, texts: dict[Path, str], planned: dict[Path, str], row: _Row, report: UpgradeReport
) -> None:
    """The journaled part of run, under the lock."""
    settings, compose = ctx.settings, ctx.compose
    originals = require_unchanged(planned)
    postgres = kind.name == "postgres"
    running = {s for s, c in compose.ps().items() if c.running}
    if postgres:
        stop = tuple(s for s in POSTGRES_CLIENTS if s in running)
        row.step = "ops health before the upgrade"
        before = run_health(settings, only=probes_for(stop)) if stop else None
        gate = ("postgres", *(r.name for r in (before.results if before else ()) if r.ok and not r.skipped))
        row.step = "listing the databases"
        databases = [d for d in list_databases(ctx.access) if d != "postgres"]  # ops's journal and lock live in postgres
    else:
        stop, gate, databases = kind.stop, kind.probes, list(kind.databases)
    volumes = {name: ctx.volume_name(name) for name in kind.volumes}
    if settings.effective_env.get("OPS_BACKUP_BUCKET"):
        row.step = "the off-VM backup (ops backup run --source postgres)"
        from ops.backup.context import backup_context
        from ops.backup.run import run_backup

        report.steps.append(f"off-VM backup {run_backup(backup_context(settings), 'manual', ['postgres']).run_id}")
    directory = ctx.copy_dir(kind.name, report.current, report.to)
    if stop:
        row.step = f"stopping {', '.join(stop)}"
        compose.run("stop", *stop)
        report.steps.append(f"stopped {', '.join(stop)}")
    row.step = "the pre-upgrade copy"
    try:
        copy = take_copy(directory, ctx.access, ctx.docker, ctx.image_of("postgres"), databases, volumes)
        _private_dir(directory / "files")
        for path, text in originals.items():
            _private_text(directory / "files" / path.name, text)
    except (Exception, Interrupted) as exc:  # Ctrl-C or SIGTERM mid-copy too: what was stopped runs again
        with shielded():
            detail = (
                f"{_failure(row.step, exc) if isinstance(exc, Exception) else f'{exc} during {row.step}'}; nothing was changed"
            )
            with contextlib.suppress(OpsError):
                if back := [s for s in stop if s in running]:
                    compose.up(back, wait=False)
                    detail += f" ({', '.join(back)} started again)"
            row.finish("failed", detail)
        if isinstance(exc, Interrupted):
            raise
        raise UpgradeError(f"upgrade {kind.name}: {detail}; the partial copy is in {directory}") from exc
    report.copy = str(directory)
    report.steps.append(f"copied {', '.join([*databases, *volumes]) or 'nothing'} to {directory.name}")
    job = _Job(ctx, kind, copy, originals, running, stop, gate)
    try:
        row.step = "writing the new image line(s)"
        for path, text in texts.items():
            _replace_file(path, text)
        row.step = f"docker compose up {' '.join(kind.start)}"
        compose.up(kind.start, wait=False)
        if postgres:
            row.step = "the health gate (postgres)"
            wait_healthy(settings, ("postgres",), timeout=ctx.timeout)
            if back := [s for s in stop if s in running]:
                row.step = f"docker compose up {' '.join(back)}"
                compose.up(back, wait=False)
        row.step = f"the health gate ({', '.join(gate)})"
        wait_healthy(settings, gate, timeout=ctx.timeout)
        _require_running(ctx, kind.start)
        report.steps.append(f"started {', '.join(kind.start)} on {report.to}; ops health passed ({', '.join(gate)})")
    except (Exception, Interrupted) as exc:  # a signal too: nothing else would put the old version back
        _roll_back(job, row, report, _failure(row.step, exc) if isinstance(exc, Exception) else f"{exc} during {row.step}")
        if isinstance(exc, Interrupted):
            raise
        return
    report.outcome = "ok"
    row.finish("ok", f"{kind.name} {report.current} -> {report.to}; copy {directory.name}")


def _require_running(ctx: Context, services: tuple[str, ...]) -> None:
    states = ctx.compose.ps()
    down = [s for s in services if s not in states or not states[s].running]
    if down:
        raise UpgradeError(
            f"{', '.join(down)} is not running: {', '.join(f'{s} {states[s].state}' for s in down if s in states)}"
        )


@dataclass(frozen=True)
class _Job:
    """An upgrade under way: its copy, the compose files as they were, what ran, what it stopped, what gates it."""

    ctx: Context
    kind: Kind
    copy: LocalCopy
    originals: dict[Path, str]
    running: set[str]
    stop: tuple[str, ...]
    gate: tuple[str, ...]


def _roll_back(job: _Job, row: _Row, report: UpgradeReport, failure: str) -> None:
    """Put the old image lines and the copy back, start what ran before, gate it; journal rolled-back.

    Shielded: a signal waits until it has finished. Raise UpgradeError (journaled rollback-failed) if it fails.
    """
    kind, copy = job.kind, job.copy
    with shielded():
        mark_quietly(row, "rolling-back", f"{failure}; restoring {copy.directory.name}")
        started = time.monotonic()
        steps: list[str] = []
        try:
            steps += _restore(job)
        except Exception as exc:
            detail = f"{failure}; the rollback failed too: {_reason(exc)}"
            finish_quietly(row, "rollback-failed", detail)
            raise UpgradeError(
                f"upgrade {kind.name}: {detail}. Its state is unknown: the copy is in {copy.directory} "
                f"(databases/*.dump: pg_restore --create; volumes/*.tar; files/: the compose file(s) as they were)"
            ) from exc
        report.rollback_seconds = round(time.monotonic() - started, 1)
        report.rollback_steps = steps
        report.outcome, report.error = "rolled-back", failure
        finish_quietly(row, "rolled-back", f"{failure}; restored {copy.directory.name} in {report.rollback_seconds:g} s")


def _restore(job: _Job) -> list[str]:
    """The rollback's steps: the new containers out, the old lines and data back, the old version started and gated."""
    ctx, kind, running, stop, gate = job.ctx, job.kind, job.running, job.stop, job.gate
    settings, compose = ctx.settings, ctx.compose
    steps: list[str] = []
    compose.stop_and_remove(kind.start)
    steps.append(f"stopped and removed the new {', '.join(kind.start)}")
    # what the upgrade started again or compose started as a dependency (clickhouse under Langfuse; the
    # applications after a Postgres minor's first gate) must not run on the data while it is put back
    if others := [s for s in stop if s not in kind.start and s != "postgres"]:
        compose.run("stop", *others)
        steps.append(f"stopped {', '.join(others)}")
    for path, text in job.originals.items():
        if read_text(path) != text:
            _replace_file(path, text)
            steps.append(f"wrote {path.name} back as it was (the old image line)")
    if kind.name == "postgres":
        compose.up(["postgres"], wait=False)
        wait_healthy(settings, ("postgres",), timeout=ctx.timeout)
        steps.append(f"started postgres {ctx.image_of('postgres')} again; ops health passed")
    steps += restore_copy(job.copy, ctx.access, ctx.docker, ctx.image_of("postgres"))
    back = [s for s in dict.fromkeys((*kind.start, *stop)) if s in running and s != "postgres"]
    if back:
        compose.up(back, wait=False)
    probes = gate if kind.name == "postgres" or any(s in running for s in kind.start) else ()
    if probes:
        wait_healthy(settings, probes, timeout=ctx.timeout)
    steps.append(
        f"started {', '.join(back) or 'nothing else (it was not running)'}"
        + (f"; ops health passed ({', '.join(probes)})" if probes else "")
    )
    return steps
