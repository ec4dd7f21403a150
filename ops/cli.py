"""The `ops` command line: click groups only; each command calls one library function."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ops.config import load_settings
from ops.errors import OpsError

project_dir_option = click.option(
    "--project-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    envvar="OPS_PROJECT_DIR",
    show_default=True,
    help="The stack's project directory (holds docker-compose.vps.yml and vps.env).",
)


def _emit(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


class OpsGroup(click.Group):
    """Turn OpsError into one clear line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OpsError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=OpsGroup)
@click.version_option(package_name="aistack-ops")
def main() -> None:
    """Provision, check and operate the self-hosted AI stack."""


@main.command()
@project_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--rule", "rules", multiple=True, help="Run only this rule (repeatable).")
def doctor(project_dir: Path, as_json: bool, rules: tuple[str, ...]) -> None:
    """Check the stack definition without Docker; exit 1 naming each problem."""
    from ops.doctor import run_doctor
    from ops.output import doctor_text

    report = run_doctor(load_settings(project_dir), list(rules) or None)
    if as_json:
        _emit(report.to_dict())
    else:
        click.echo(doctor_text(report))
    sys.exit(0 if report.ok else 1)


@main.group()
def secrets() -> None:
    """Generate and check vps.env secrets."""


@secrets.command("init")
@project_dir_option
@click.option("--dry-run", is_flag=True, help="Generate but write nothing.")
def secrets_init(project_dir: Path, dry_run: bool) -> None:
    """Write vps.env (mode 600) from vps.env.example with strong generated secrets; never overwrite."""
    from ops.keyguard import refuse_fresh_keys
    from ops.secrets import init_secrets

    settings = load_settings(project_dir)
    refuse_fresh_keys(settings)  # fresh keys over this host's old data would leave it undecryptable
    values = init_secrets(settings.env_example, settings.env_file, dry_run=dry_run)
    verb = "would write" if dry_run else "wrote"
    click.echo(f"{verb} {settings.env_file} (mode 600) with {len(values)} generated secrets")
    if not dry_run and (settings.project_dir / ".env").is_symlink():
        click.echo(".env links to it: plain `docker compose` in this directory uses vps.env and docker-compose.vps.yml")
    click.echo("next: set the domains, ACME_EMAIL and your provider keys in it, then run `ops doctor`")


@secrets.command("add-missing")
@project_dir_option
@click.option("--dry-run", is_flag=True, help="Name what would be added; write nothing.")
def secrets_add_missing(project_dir: Path, dry_run: bool) -> None:
    """Append generated values for secrets an older vps.env lacks; never change one it has."""
    from ops.secrets import add_missing_secrets

    settings = load_settings(project_dir)
    added = add_missing_secrets(settings.env_file, dry_run=dry_run)
    verb = "would add" if dry_run else "added"
    click.echo(f"{verb} {', '.join(added)} to {settings.env_file}" if added else f"{settings.env_file} lacks no secret")
    if added and not dry_run:
        click.echo("containers read vps.env when created: the slice or deploy that uses a new secret recreates them")


@main.command()
@project_dir_option
@click.option("--keep-running", is_flag=True, help="After the requests, keep the stack up until Ctrl-C.")
def demo(project_dir: Path, keep_running: bool) -> None:
    """Local mode: real LiteLLM, Postgres and Redis with a mock provider; no keys, no Docker."""
    import signal

    from ops.local.demo import run_demo

    received: list[int] = []

    def _terminate(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt  # unwind and stop every child, as Ctrl-C does

    signal.signal(signal.SIGTERM, _terminate)
    # started from a background shell job, SIGINT arrives ignored and Python never turns it into
    # KeyboardInterrupt: Ctrl-C (or kill -INT) must stop the demo wherever it was started
    signal.signal(signal.SIGINT, _terminate)
    settings = load_settings(project_dir)
    try:
        run_demo(settings, keep_running=keep_running, echo=click.echo)
    except KeyboardInterrupt:  # before the prompt: everything started is stopped; exit as the signal says
        click.echo("ops demo: interrupted; everything it started is stopped", err=True)
        raise SystemExit(128 + (received[-1] if received else signal.SIGINT)) from None


@main.command()
@project_dir_option
@click.argument("text", required=False)
@click.option("--file", "text_file", type=click.File("r"), help="Read the task from a file ('-' for stdin).")
@click.option("--json", "as_json", is_flag=True, help='Print {"model": ..., "reason": ...}.')
def route(project_dir: Path, text: str | None, text_file: Any, as_json: bool) -> None:
    """Print the model group a task goes to, and why (routing-rules.yaml)."""
    from ops.gateway.routing import route_task

    if (text is None) == (text_file is None):
        raise click.UsageError("give the task as TEXT or with --file, not both")
    chosen = route_task(load_settings(project_dir), text if text is not None else text_file.read())
    if as_json:
        _emit(chosen.to_dict())
    else:
        click.echo(f"{chosen.model}  ({chosen.reason}; rule {chosen.rule})")


@main.command()
@project_dir_option
@click.argument("task")
@click.option("--model", help="Use this model group instead of the routed one (a group of litellm-config.yaml).")
@click.option("--dry-run", is_flag=True, help="Print the model, the key and OpenCode's command and config; start nothing.")
@click.option("--run", "once", is_flag=True, help="Run once without the TUI (`opencode run`): print the answer and exit.")
def code(project_dir: Path, task: str, model: str | None, dry_run: bool, once: bool) -> None:
    """Route TASK like `ops route` and start OpenCode on that model through the gateway."""
    from ops.code import run_code

    sys.exit(run_code(load_settings(project_dir), task, model, dry_run=dry_run, once=once, echo=click.echo))


@main.command("slice")
@project_dir_option
@click.argument("number", type=int, required=False)
@click.option("--list", "list_only", is_flag=True, help="List the twelve slices.")
@click.option("--plan", "action", flag_value="plan", help="Show what applying would touch and what compose would do.")
@click.option("--apply", "action", flag_value="apply", help="Snapshot, bring the slice up, verify; roll back if verify fails.")
@click.option("--verify", "action", flag_value="verify", default=True, help="Check the success criteria (default).")
@click.option("--rollback", "action", flag_value="rollback", help="Return to the snapshot of the latest apply.")
@click.option("--dry-run", is_flag=True, help="With --apply: plan only, change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask before --apply or --rollback.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--identity", metavar="FILE", help="Slice 10: the age identity its drill decrypts with (- reads stdin); it stays off the VM."
)
def slice_command(
    project_dir: Path,
    number: int | None,
    list_only: bool,
    action: str,
    dry_run: bool,
    yes: bool,
    as_json: bool,
    identity: str | None,
) -> None:
    """Plan, apply, verify or roll back slice NUMBER of the plan; exit 1 if it fails."""
    from ops.slices import get_slice, registered

    if list_only:
        rows = [
            {"slice": n, "title": m.TITLE, "requires": list(m.REQUIRES), "services": list(m.SERVICES)}
            for n, m in registered().items()
        ]
        if as_json:
            _emit({"slices": rows})
        else:
            for row in rows:
                click.echo(f"{row['slice']:>2}  {row['title']}  (needs {', '.join(map(str, row['requires'])) or 'nothing'})")
        return
    if number is None:
        raise click.UsageError("give a slice NUMBER (1-12) or --list")
    get_slice(number)  # a clear error for a number out of range, before touching anything
    from ops.interrupts import Interrupted
    from ops.slices import engine

    if identity == "-" and action in ("apply", "rollback") and not (yes or dry_run):
        raise click.UsageError("--identity - reads stdin: add --yes")
    settings = load_settings(project_dir)
    key = click.get_current_context().with_resource(_identity(identity))  # stdin's copy lives until the command ends
    if key is not None:  # slice 10's drill decrypts with it; vps.env holds only the recipients
        settings = dataclasses.replace(settings, env={**settings.env, "OPS_BACKUP_AGE_IDENTITY": str(key)})
    runtime = engine.Runtime.for_settings(settings)
    if action == "rollback" and not yes:
        click.confirm(engine.rollback_warning(runtime.settings, number), abort=True)
    elif action == "apply" and not (yes or dry_run):
        click.confirm(f"{action} slice {number}?", abort=True)
    result: Any
    try:
        if action == "plan":
            result = engine.run_plan(runtime, number)
        elif action == "apply":
            result = engine.run_apply(runtime, number, dry_run=dry_run)
        elif action == "rollback":
            result = engine.run_rollback(runtime, number)
        else:
            result = engine.run_verify(runtime, number)
    except Interrupted as exc:  # the lock is released and the journal says interrupted by now
        click.echo(f"error: slice {number}: {exc}; see `ops status`", err=True)
        sys.exit(exc.exit_code)
    if as_json:
        _emit(result.to_dict())
    else:
        from ops.output import slice_result_text

        click.echo(slice_result_text(result.to_dict()))
    sys.exit(0 if getattr(result, "ok", True) else 1)


@main.command()
@project_dir_option
@click.option("--dry-run", is_flag=True, help="Show which services would start or be recreated, and why; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask before deploying.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds the services have to become healthy (each way).")
def deploy(project_dir: Path, dry_run: bool, yes: bool, as_json: bool, timeout: float) -> None:
    """Bring the running stack to the project's files, health-gated; roll back, exit 1 if health fails (3: rollback failed)."""
    from ops.deploy import check_timeout, deploy_text, run_deploy
    from ops.interrupts import Interrupted

    settings = load_settings(project_dir)
    check_timeout(timeout)
    approved = None  # --yes: whatever the plan is under the lock
    if not (yes or dry_run):
        shown = run_deploy(settings, dry_run=True)
        click.echo(deploy_text(shown))
        click.confirm("deploy?", abort=True)
        approved = shown.plan.hash
    try:
        report = run_deploy(settings, dry_run=dry_run, timeout=timeout, approved=approved)
    except Interrupted as exc:  # the lock is released and the journal says interrupted by now
        click.echo(f"error: deploy: {exc}; rolled back first, unless the journal says rollback-failed (.ops/deploys)", err=True)
        sys.exit(exc.exit_code)
    if as_json:
        _emit(report.to_dict())
    else:
        click.echo(deploy_text(report))
    sys.exit(0 if report.ok else 3 if report.outcome == "rollback-failed" else 1)


@main.command()
@project_dir_option
@click.argument("service")
@click.option("--to", "version", required=True, metavar="VERSION", help="The release tag to run, e.g. 2.41.0 or 18.7-trixie.")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask before upgrading (the service stops meanwhile).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds the new (or old) version has to pass ops health.")
@click.option("--from-image", metavar="IMAGE", help="Postgres major only: the old major's image, if no container has it.")
def upgrade(
    project_dir: Path, service: str, version: str, dry_run: bool, yes: bool, as_json: bool, timeout: float, from_image: str | None
) -> None:
    """Upgrade SERVICE (n8n, langfuse, litellm, postgres) to VERSION; roll back and exit 1 if it fails."""
    from ops.interrupts import Interrupted
    from ops.upgrade import check_timeout, run_upgrade, upgrade_text

    settings = load_settings(project_dir)
    check_timeout(timeout)
    if not (yes or dry_run):
        click.echo(upgrade_text(run_upgrade(settings, service, version, dry_run=True, from_image=from_image)))
        click.confirm(f"upgrade {service}?", abort=True)
    try:
        report = run_upgrade(settings, service, version, dry_run=dry_run, timeout=timeout, from_image=from_image)
    except Interrupted as exc:  # rolled back if anything had changed; the lock is released, the journal says which
        click.echo(f"error: upgrade: {exc}; whatever it had changed was rolled back (copy under .ops/upgrades/)", err=True)
        sys.exit(exc.exit_code)
    if as_json:
        _emit(report.to_dict())
    else:
        click.echo(upgrade_text(report))
    sys.exit(0 if report.ok else 1)


@main.command()
@project_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(project_dir: Path, as_json: bool) -> None:
    """Each slice's latest operation, from the journal."""
    from ops.slices import engine

    rows = engine.run_status(engine.Runtime.for_settings(load_settings(project_dir)))
    if as_json:
        _emit({"slices": [r.to_dict() for r in rows]})
    else:
        from ops.output import status_text

        click.echo(status_text([r.to_dict() for r in rows]))


@main.command()
@project_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--timeout", default=3.0, show_default=True, help="Seconds each service has to answer.")
@click.option("--only", multiple=True, help="Probe only this service (repeatable).")
def health(project_dir: Path, as_json: bool, timeout: float, only: tuple[str, ...]) -> None:
    """Ask every service of the running stack at once; one line each with its latency; exit 1 naming what is down."""
    from ops.health import health_text, run_health

    report = run_health(load_settings(project_dir), timeout=timeout, only=only)
    if as_json:
        _emit(report.to_dict())
    else:
        click.echo(health_text(report))
    sys.exit(0 if report.ok else 1)


@main.group()
def lock() -> None:
    """The operator lock."""


@lock.command("break")
@project_dir_option
@click.option("--yes", is_flag=True, required=True, help="Confirm that no operation is running.")
def lock_break(project_dir: Path, yes: bool) -> None:
    """Remove a stale lock (only when no operation is running)."""
    from ops.journal import break_lock
    from ops.slices import engine

    held = break_lock(engine.Runtime.for_settings(load_settings(project_dir)).psql)
    click.echo(f"removed the lock held by {held}" if held else "the lock was free")


@main.group()
def profile() -> None:
    """Optional parts of the stack (COMPOSE_PROFILES in vps.env)."""


@profile.command("disable")
@project_dir_option
@click.argument("name")
def profile_disable(project_dir: Path, name: str) -> None:
    """Drop a profile from COMPOSE_PROFILES and stop and remove its services' containers (volumes kept)."""
    from ops.profiles import disable_profile

    changes = disable_profile(load_settings(project_dir), name)
    click.echo("\n".join(changes) if changes else f"profile {name} is off and none of its services runs")


@main.command()
@project_dir_option
@click.argument("action", type=click.Choice(["restart", "logs", "stats", "exec"]))
@click.argument("service")
@click.argument("command", nargs=-1)
@click.option("--tail", default=100, show_default=True, help="Log lines (logs).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (stats).")
def runbook(project_dir: Path, action: str, service: str, command: tuple[str, ...], tail: int, as_json: bool) -> None:
    """Runbook operations on one service; works remotely with DOCKER_HOST=ssh://user@vm."""
    from ops.runtime.runbook import run_runbook

    result = run_runbook(load_settings(project_dir), action, service, list(command), tail)
    if as_json and isinstance(result, dict):
        _emit(result)
    elif isinstance(result, dict):
        click.echo(" ".join(f"{k}={v}" for k, v in result.items()))
    else:
        click.echo(result, nl=not result.endswith("\n"))


@main.group()
def backup() -> None:
    """Backups to GCS: run, list, verify, restore, prune, drill (see docs/BACKUPS.md)."""
    import logging
    import signal

    # one timestamped line per outcome on stderr: cron appends it to /var/log/aistack-backup.log
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("urllib3", "google", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _backup_terminated)  # the crontab's `timeout`: clean up, notify, exit 2


def _backup_terminated(signum: int, frame: object) -> None:
    raise OpsError("stopped by SIGTERM (the crontab's timeout, or a shutdown); the run's objects are removed")


def _safe_settings(project_dir: Path) -> Any:
    """The project's Settings, refusing placeholder secrets (commands that touch the running stack)."""
    settings = load_settings(project_dir)
    settings.require_safe_secrets()
    return settings


def _backup_context(project_dir: Path, identity: Path | None = None) -> Any:
    from ops.backup.context import backup_context, with_identity

    return with_identity(backup_context(_safe_settings(project_dir)), identity)


identity_option = click.option(
    "--identity",
    metavar="FILE",
    help="The age identity that decrypts the backups, given at run time so it stays off the VM; - reads it from stdin.",
)


@contextlib.contextmanager
def _identity(given: str | None) -> Iterator[Path | None]:
    """Yield the identity file --identity names (stdin's copy in memory for -, removed after), or None."""
    if not given:
        yield None
        return
    from ops.backup.identity import identity_file

    with identity_file(given, sys.stdin.buffer) as path:
        yield path


@backup.command("run")
@project_dir_option
@click.option("--schedule", type=click.Choice(["daily", "weekly", "manual"]), default="manual", show_default=True)
@click.option(
    "--source", "sources", multiple=True, help="Only this source (repeatable): postgres, qdrant, volumes, git, secrets, state."
)
@click.option("--dry-run", is_flag=True, help="Say what would be backed up; touch nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def backup_run(project_dir: Path, schedule: str, sources: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Stream the sources to the bucket (zstd, age), then write the manifest; exit 2 if any stage fails."""
    from ops.backup.run import run_backup

    report = run_backup(_backup_context(project_dir), schedule, list(sources) or None, dry_run)
    if as_json:
        _emit(report.to_dict())
        return
    if dry_run:
        click.echo(f"would back up {', '.join(report.planned)} as {report.run_id}")
        return
    for entry in report.entries:
        click.echo(f"  {entry.object}  {entry.size} bytes  {entry.seconds:.1f} s")
    click.echo(f"backup {report.run_id}: {len(report.entries)} objects, {report.size} bytes in {report.seconds:.1f} s")


@backup.command("list")
@project_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def backup_list(project_dir: Path, as_json: bool) -> None:
    """List the backups in the bucket, oldest first; incomplete runs are marked."""
    from ops.backup.catalog import runs

    found = [r.to_dict() for r in runs(_backup_context(project_dir))]
    if as_json:
        _emit({"backups": found})
        return
    for run in found:
        click.echo(f"{run['id']:<32}{run['size']:>14} bytes  {','.join(run['sources']) or '-':<28}{run['state']}")


@backup.command("verify")
@project_dir_option
@click.argument("backup_id", required=False)
@identity_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def backup_verify(project_dir: Path, backup_id: str | None, identity: str | None, as_json: bool) -> None:
    """Check every object of a backup (default: the newest): size, sha256, and that it decodes; exit 1 if not."""
    from ops.backup.verify import run_verify

    with _identity(identity) as key:
        report = run_verify(_backup_context(project_dir, key), backup_id)
    if as_json:
        _emit(report.to_dict())
    else:
        for check in report.checks:
            click.echo(f"{'ok' if check.ok else 'BAD':<5}{check.object}: {check.detail}")
        click.echo(f"{'OK' if report.ok else 'FAILED'}: backup {report.run_id}")
    sys.exit(0 if report.ok else 1)


@backup.command("restore")
@project_dir_option
@click.argument("backup_id")
@click.option("--source", help="Only this source.")
@click.option("--name", help="Only this object (e.g. n8n.dump).")
@click.option("--into", type=click.Choice(["scratch", "live"]), default="scratch", show_default=True)
@click.option("--yes", is_flag=True, help="Confirm a live restore (it replaces data, after a safety backup).")
@click.option("--dry-run", is_flag=True, help="Say what would be restored.")
@identity_option
def backup_restore(
    project_dir: Path,
    backup_id: str,
    source: str | None,
    name: str | None,
    into: str,
    yes: bool,
    dry_run: bool,
    identity: str | None,
) -> None:
    """Restore a backup beside the live data (scratch) or over it (live, after a safety backup)."""
    from ops.backup.restore import run_restore

    if into == "live" and not yes and not dry_run:
        raise click.UsageError("a live restore replaces data: add --yes (a pre-restore backup is taken first)")
    with _identity(identity) as key:
        report = run_restore(_backup_context(project_dir, key), backup_id, source, name, into, dry_run)
    if report.safety_backup:
        click.echo(f"safety backup of the replaced data: {report.safety_backup}")
    for line in report.restored:
        click.echo(line)


@backup.command("prune")
@project_dir_option
@click.option("--dry-run", is_flag=True, help="Say what would be deleted.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def backup_prune(project_dir: Path, dry_run: bool, as_json: bool) -> None:
    """Delete backups past retention (30 days daily, 4 weeks weekly); never the newest good one."""
    from ops.backup.retention import run_prune

    plan = run_prune(_backup_context(project_dir), dry_run)
    if as_json:
        _emit(plan.to_dict())
        return
    verb = "would delete" if dry_run else "deleted"
    for run_id, why in plan.delete:
        click.echo(f"{verb} {run_id}: {why}")
    for problem in plan.problems:
        click.echo(f"PROBLEM {problem}")
    click.echo(f"kept {len(plan.keep)} runs and drill records, {verb} {len(plan.delete)}")


@backup.command("drill")
@project_dir_option
@click.argument("backup_id", required=False)
@click.option("--keep", is_flag=True, help="Keep the scratch databases for inspection.")
@identity_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def backup_drill(project_dir: Path, backup_id: str | None, keep: bool, identity: str | None, as_json: bool) -> None:
    """Restore the newest backup into scratch databases and compare every table; exit 1 on a difference."""
    from ops.backup.drill import run_drill

    with _identity(identity) as key:
        report = run_drill(_backup_context(project_dir, key), backup_id, keep)
    if as_json:
        _emit(report.to_dict())
    else:
        for table in report.tables:
            if not table.ok:
                click.echo(f"DIFF {table.database}.{table.table}: backup {table.expected}, restored {table.restored}")
        for problem in report.problems:
            click.echo(f"PROBLEM {problem}")
        same = sum(t.ok for t in report.tables)
        verdict = "OK" if report.ok else "FAILED"
        click.echo(
            f"{verdict}: drill of {report.run_id}: {report.databases} databases, {same}/{len(report.tables)} tables identical"
        )
    sys.exit(0 if report.ok else 1)


@main.command()
@project_dir_option
@click.option("--backup", "backup_id", help="The backup to recover (default: the newest complete one with Postgres).")
@identity_option
@click.option("--service", "services", multiple=True, help="Start and health-gate only this service (repeatable).")
@click.option("--yes", is_flag=True, help="Do not ask before recovering.")
@click.option("--dry-run", is_flag=True, help="Say which backup and objects it would restore; touch nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report (phases and their seconds) as JSON.")
def recover(
    project_dir: Path,
    backup_id: str | None,
    identity: str | None,
    services: tuple[str, ...],
    yes: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """The whole stack back on an empty host from GCS: vps.env, volumes, databases, Qdrant, git, .ops; then up."""
    import logging

    from ops.recover import run_recover

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("urllib3", "google", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not (yes or dry_run):
        if identity == "-":
            raise click.UsageError("--identity - reads stdin: add --yes")
        click.confirm(f"recover the stack into {project_dir.resolve()} from the backups?", abort=True)
    with _identity(identity) as key:
        report = run_recover(load_settings(project_dir), backup_id, key, services, dry_run)
    if as_json:
        _emit(report.to_dict())
        return
    if dry_run:
        click.echo(f"would recover backup {report.backup_id} (volumes from {report.volumes_backup or 'none'}):")
        for line in report.planned:
            click.echo(f"  {line}")
        return
    for phase in report.phases:
        click.echo(f"{phase.seconds:7.1f} s  {phase.name}: {'; '.join(phase.detail)}")
    click.echo(f"recovered backup {report.backup_id} in {report.seconds:.0f} s")


@main.group()
def events() -> None:
    """The event log on Redis Streams (docs/EVENT_SCHEMA.md)."""


def _events(project_dir: Path) -> Any:
    from ops.events.context import events_config

    return events_config(_safe_settings(project_dir))


@events.command("publish")
@project_dir_option
@click.argument("event_file", type=click.File("r"), default="-")
def events_publish(project_dir: Path, event_file: Any) -> None:
    """Validate and publish one event (JSON from EVENT_FILE or stdin); exit 2 naming a bad field or a conflict."""
    from ops.events.publisher import Publisher

    config = _events(project_dir)
    published = Publisher(config.client(), config.streams).publish(event_file.read())
    _emit(published.to_dict())


@events.command("tail")
@project_dir_option
@click.option("--count", default=20, show_default=True, help="How many of the newest events.")
@click.option("--dead", is_flag=True, help="Show the dead-letter stream instead.")
def events_tail(project_dir: Path, count: int, dead: bool) -> None:
    """Print the newest events (or dead letters), oldest first, one JSON line each."""
    config = _events(project_dir)
    stream = config.streams.dead if dead else config.streams.name
    for stream_id, fields in reversed(config.client().xrevrange(stream, count=count)):
        click.echo(json.dumps({"stream_id": stream_id, **fields}, sort_keys=True))


@events.command("status")
@project_dir_option
def events_status(project_dir: Path) -> None:
    """Stream length, dead letters, and change requests by status."""
    from ops.events.observer import status

    _emit(status(_events(project_dir).observer()))


@main.group()
def observer() -> None:
    """The observer agent (runs as the compose service `observer`)."""


@observer.command("run")
@project_dir_option
@click.option("--once", is_flag=True, help="Handle what is waiting, then exit.")
def observer_run(project_dir: Path, once: bool) -> None:
    """Consume events, log them, decide change requests, commit approved ones; stop cleanly on SIGTERM."""
    import signal
    import threading

    from ops.events.logs import configure_logging

    configure_logging()  # HTTP clients at WARNING, the Telegram token redacted from every record
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stats = _events(project_dir).observer().run(stop, max_idle_polls=1 if once else None)
    click.echo(f"handled {stats.handled}, failed {stats.failed}, dead-lettered {stats.dead}, claimed {stats.claimed}")


@main.group()
def cr() -> None:
    """Change requests: list, show, approve, reject."""


@cr.command("list")
@project_dir_option
@click.option("--status", type=click.Choice(["pending", "approved", "applied", "rejected", "failed"]), help="Only these.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cr_list(project_dir: Path, status: str | None, as_json: bool) -> None:
    """List change requests, by aggregate and version."""
    found = [c.summary() for c in _events(project_dir).store().list(status)]
    if as_json:
        _emit({"change_requests": found})
        return
    for c in found:
        click.echo(
            f"{c['id']:<34}{c['status']:<9}{c['aggregate_id']}@{c['version']:<5}{c['action']} {c['resource']}: {c['reason']}"
        )


@cr.command("show")
@project_dir_option
@click.argument("cr_id")
def cr_show(project_dir: Path, cr_id: str) -> None:
    """Print one change request with its event and history."""
    _emit(_events(project_dir).store().get(cr_id).to_dict())


@cr.command("approve")
@project_dir_option
@click.argument("cr_id")
@click.option("--by", default=None, help="Who decides (default: your user name).")
def cr_approve(project_dir: Path, cr_id: str, by: str | None) -> None:
    """Approve a pending (or failed: retry it) change request; the observer commits it on its next poll."""
    import getpass

    done = _events(project_dir).store().decide(cr_id, True, by or getpass.getuser())
    click.echo(f"{done.id}: approved; the observer commits it next")


@cr.command("reject")
@project_dir_option
@click.argument("cr_id")
@click.option("--reason", default="", help="Why.")
@click.option("--by", default=None, help="Who decides (default: your user name).")
def cr_reject(project_dir: Path, cr_id: str, reason: str, by: str | None) -> None:
    """Reject a pending change request; nothing is committed."""
    import getpass

    done = _events(project_dir).store().decide(cr_id, False, by or getpass.getuser(), reason)
    click.echo(f"{done.id}: rejected")


@main.group()
def host() -> None:
    """The VM itself: Docker, swap, sysctl, upgrades, log limits, time, firewall, Ops Agent (docs/HOST.md)."""


def host_options(func: Any) -> Any:
    """The options both host commands take: where (this machine, or --ssh), and the report's form."""
    for option in reversed(
        [
            project_dir_option,
            click.option("--ssh", metavar="USER@HOST", help="Work on this host over ssh (default: this machine)."),
            click.option("--port", default=22, show_default=True, help="ssh port."),
            click.option("--key", type=click.Path(path_type=Path, dir_okay=False), help="ssh private key file."),
            click.option(
                "--known-hosts",
                type=click.Path(path_type=Path, dir_okay=False),
                help="known_hosts file (default ~/.ssh/known_hosts; a new host's key is added).",
            ),
            click.option("--no-ops-agent", is_flag=True, help="Leave the Google Ops Agent out (a host outside GCP)."),
            click.option("--json", "as_json", is_flag=True, help="Print JSON."),
        ]
    ):
        func = option(func)
    return func


@host.command("check")
@host_options
def host_check(
    project_dir: Path, ssh: str | None, port: int, key: Path | None, known_hosts: Path | None, no_ops_agent: bool, as_json: bool
) -> None:
    """Say what `ops host prepare` would change (a dry run); exit 1 if anything differs."""
    from ops.host import run_host_check

    report = run_host_check(
        load_settings(project_dir), ssh, port=port, key=key, known_hosts=known_hosts, ops_agent=not no_ops_agent
    )
    _emit(report.to_dict()) if as_json else click.echo("\n".join(report.lines()))
    sys.exit(0 if report.ok else 1)


@host.command("prepare")
@host_options
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
def host_prepare(
    project_dir: Path,
    ssh: str | None,
    port: int,
    key: Path | None,
    known_hosts: Path | None,
    no_ops_agent: bool,
    as_json: bool,
    dry_run: bool,
) -> None:
    """Bring the host to what the stack needs; a second run changes nothing and says so."""
    from ops.host import run_host_prepare

    report = run_host_prepare(
        load_settings(project_dir),
        ssh,
        port=port,
        key=key,
        known_hosts=known_hosts,
        ops_agent=not no_ops_agent,
        dry_run=dry_run,
    )
    _emit(report.to_dict()) if as_json else click.echo("\n".join(report.lines()))


@main.group()
def images() -> None:
    """Container images: check each exists in its registry, pin their digests (needs network access)."""


registry_map_option = click.option(
    "--registry-map",
    "registry_map",
    multiple=True,
    metavar="NAME=URL",
    help="Reach registry NAME at URL instead (a mirror, a test registry), e.g. docker.io=http://127.0.0.1:5000.",
)


@images.command("check")
@project_dir_option
@registry_map_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def images_check(project_dir: Path, registry_map: tuple[str, ...], as_json: bool) -> None:
    """Ask each image's registry for its manifest; exit 1 naming each image missing or not checked."""
    from ops.images import check_images

    report = check_images(load_settings(project_dir).compose_file, registry_map)
    if as_json:
        _emit(report.to_dict())
    else:
        for status in report.images:
            click.echo(status.line())
        if report.unreachable:
            click.echo(f"no container registry reachable: {report.unreachable}", err=True)
        elif not report.ok:
            click.echo("not found or not checked: " + ", ".join(f"{i.service} ({i.image})" for i in report.problems), err=True)
    sys.exit(0 if report.ok else 1)


@images.command("pin")
@project_dir_option
@registry_map_option
@click.option("--dry-run", is_flag=True, help="Print the diff; write nothing.")
def images_pin(project_dir: Path, registry_map: tuple[str, ...], dry_run: bool) -> None:
    """Write each tag's current digest into docker-compose.vps.yml (image: name:tag@sha256:...)."""
    from ops.images import pin_images

    result = pin_images(load_settings(project_dir).compose_file, registry_map, dry_run)
    if result.diff:
        click.echo(result.diff, nl=False)
    verb = "would pin" if dry_run else "pinned"
    click.echo(f"{verb} {len(result.changes)} image(s); {len(result.unchanged)} already current")


@main.group()
def workflow() -> None:
    """The n8n workflows shipped in workflows/."""


@workflow.command("sync")
@project_dir_option
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if the workflow's router is behind the rules.")
def workflow_sync(project_dir: Path, check: bool) -> None:
    """Regenerate the routing workflow's router from routing-rules.yaml (workflows/litellm-router.json)."""
    from ops.workflows.router import router_drift, sync_router

    settings = load_settings(project_dir)
    if check:
        drift = router_drift(settings)
        click.echo(drift or "workflows/litellm-router.json routes by routing-rules.yaml")
        sys.exit(1 if drift else 0)
    click.echo("updated" if sync_router(settings) else "already in step with routing-rules.yaml")


@main.group()
def bench() -> None:
    """Benchmarks: figures measured side by side in one run."""


@bench.command("memory")
@project_dir_option
@click.option("--requests", default=2000, show_default=True, help="Requests per load run.")
@click.option("--concurrency", default=20, show_default=True, help="Requests in flight.")
@click.option("--node", type=click.Path(path_type=Path, dir_okay=False), help="Node 24 binary, to measure n8n too.")
@click.option("--n8n-dir", type=click.Path(path_type=Path, file_okay=False), help="Where n8n is npm-installed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_memory(
    project_dir: Path, requests: int, concurrency: int, node: Path | None, n8n_dir: Path | None, as_json: bool
) -> None:
    """Resident memory of Postgres, Redis, Caddy, LiteLLM (and n8n): idle and under a bounded load."""
    from ops.bench.memory import run_memory_bench

    rows = run_memory_bench(load_settings(project_dir), requests, concurrency, node, n8n_dir)
    if as_json:
        _emit({"memory": [r.to_dict() for r in rows]})
        return
    click.echo(f"{'service':<10}{'idle MB':>9}{'peak MB':>9}  load")
    for row in rows:
        click.echo(f"{row.service:<10}{row.idle_mb:>9.0f}{row.load_mb:>9.0f}  {row.load}")


@bench.command("gateway")
@project_dir_option
@click.option("--requests", default=1000, show_default=True, help="Requests per run.")
@click.option("--concurrency", "concurrencies", multiple=True, type=int, default=(1, 20, 100), show_default=True)
@click.option("--config", "configs", multiple=True, help="NAME=PATH: another LiteLLM config run beside them (repeatable).")
@click.option(
    "--server-args", "server_args", multiple=True, help="NAME=ARGS: litellm options for config NAME, e.g. granian=--run_granian."
)
@click.option("--stream", is_flag=True, help="Stream every request (LiteLLM's per-chunk work).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_gateway(
    project_dir: Path,
    requests: int,
    concurrencies: tuple[int, ...],
    configs: tuple[str, ...],
    server_args: tuple[str, ...],
    stream: bool,
    as_json: bool,
) -> None:
    """Direct upstream vs LiteLLM (shipped and minimal config): throughput, latency, errors, memory, CPU per request."""
    from ops.bench.gateway import run_gateway_bench
    from ops.output import gateway_bench_text

    result = run_gateway_bench(
        load_settings(project_dir), requests, tuple(concurrencies), extra_configs=configs, server_args=server_args, stream=stream
    )
    if as_json:
        _emit(result.to_dict())
    else:
        click.echo(gateway_bench_text(result))


@bench.command("backup")
@project_dir_option
@click.option("--size", "sizes", multiple=True, type=int, default=(200, 1000), show_default=True, help="Database MB.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_backup(project_dir: Path, sizes: tuple[int, ...], as_json: bool) -> None:
    """Our streaming backup vs the plan's pg_dump | gzip > file, then upload: time, memory, disk."""
    from ops.bench.backup import run_backup_bench

    result = run_backup_bench(load_settings(project_dir), tuple(sizes))
    if as_json:
        _emit(result.to_dict())
        return
    click.echo(f"{'db MB':>6} {'way':<5}{'seconds':>9}{'peak MB':>9}{'disk MB':>9}{'staged MB':>10}{'stored MB':>10}")
    for r in result.runs:
        click.echo(
            f"{r.database_mb:>6.0f} {r.way:<5}{r.seconds:>9.1f}{r.peak_mb:>9.0f}"
            f"{r.disk_written_mb:>9.0f}{r.staged_mb:>10.0f}{r.stored_mb:>10.0f}"
        )
    for ratio in result.ratios():
        click.echo(f"{ratio['database_mb']:>6} MB: time ours/plan {ratio['time_ratio']}x, memory {ratio['memory_ratio']}x")


@bench.command("events")
@click.option("--events", "count", default=5000, show_default=True, help="Events published for the publish rate.")
@click.option("--end-to-end", "end_to_end", default=200, show_default=True, help="Events taken to a pushed commit.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_events(count: int, end_to_end: int, as_json: bool) -> None:
    """Publish rate against redis-benchmark's XADD, and publish-to-commit through the observer."""
    from ops.bench.events import run_events_bench

    result = run_events_bench(count, end_to_end).to_dict()
    if as_json:
        _emit(result)
        return
    click.echo(f"XADD ceiling (redis-benchmark, 1 client): {result['xadd_ceiling_per_s']} /s")
    click.echo(f"plain XADD from Python (the plan's way): {result['plain_xadd_from_python_per_s']} /s")
    click.echo(
        f"our publish (validate + Lua append): {result['published_per_s']} /s "
        f"({result['publish_vs_plain']}x the plain XADD, {result['publish_ratio']}x the ceiling)"
    )
    click.echo(
        f"publish -> pushed commit: {result['end_to_end_per_s']} events/s, "
        f"p50 {result['end_to_end_p50_ms']} ms, max {result['end_to_end_max_ms']} ms"
    )


@bench.command("scaling")
@project_dir_option
@click.option("--requests", default=1000, show_default=True, help="Requests of the concurrency load, per run.")
@click.option("--concurrency", default=20, show_default=True, help="Requests in flight (the mock answers in 50 ms).")
@click.option("--users", default=100, show_default=True, help="Locust users of the load test's spike (realistic mock).")
@click.option("--seconds", default=30.0, show_default=True, help="How long the users' load runs, per run.")
@click.option("--cpuset", "cpusets", multiple=True, help="CPUs the stack is held to, repeatable [default: 0 and 0-1].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_scaling(
    project_dir: Path, requests: int, concurrency: int, users: int, seconds: float, cpusets: tuple[str, ...], as_json: bool
) -> None:
    """LiteLLM at one replica and at two behind Caddy, same load: throughput, p95, PSS per replica (docs/SCALING.md)."""
    from ops.bench.scaling import run_scaling_bench

    result = run_scaling_bench(load_settings(project_dir), requests, concurrency, users, seconds, tuple(cpusets))
    if as_json:
        _emit(result.to_dict())
    else:
        click.echo(result.text())


@main.command()
@project_dir_option
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Choice(["steady", "spike", "sustained"]),
    help="Run only this scenario (repeatable); default: all three of the plan.",
)
@click.option("--scale", default=1.0, show_default=True, help="Multiply every duration (0.01: 5 min in 3 s).")
@click.option("--local", is_flag=True, help="Start the gateway here (LiteLLM, Redis, mock providers) instead of the stack's.")
@click.option("--real-providers", is_flag=True, help="Run even when real providers answer (spends the provider budgets).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def loadtest(
    project_dir: Path, scenarios: tuple[str, ...], scale: float, local: bool, real_providers: bool, as_json: bool
) -> None:
    """The plan's load test with Locust; exit 1 naming each failed criterion (Locust's progress on stderr)."""
    from ops.loadtest.report import report_text
    from ops.loadtest.runner import run_loadtest

    report = run_loadtest(load_settings(project_dir), scenarios, scale, local=local, allow_real_providers=real_providers)
    if as_json:
        _emit(report.to_dict())
    else:
        click.echo(report_text(report))
    sys.exit(0 if report.ok else 1)


@main.command()
@project_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cost(project_dir: Path, as_json: bool) -> None:
    """Spend today and this month by model group and provider, against the budgets (the source the alerts read)."""
    from ops.cost import run_cost

    report = run_cost(load_settings(project_dir))
    if as_json:
        _emit(report.to_dict())
    else:
        click.echo("\n".join(report.lines()))


@main.group()
def alerts() -> None:
    """Alerts: the local checks and the Cloud Monitoring policies for when the VM itself is down."""


@alerts.command("check")
@project_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--quiet", is_flag=True, help="Print only what was sent, failed or could not be read (cron's log).")
@click.option("--dry-run", is_flag=True, help="Read every rule and the state; send and save nothing.")
@click.option(
    "--rule",
    "rules",
    multiple=True,
    type=click.Choice(["memory", "disk", "health", "spend", "backup"]),
    help="Check only this rule (repeatable); backup covers the restore drills.",
)
def alerts_check(project_dir: Path, as_json: bool, quiet: bool, dry_run: bool, rules: tuple[str, ...]) -> None:
    """Check memory, disk, health, spend, backups and drills, the observer; notify what changed (cron, every minute).

    Exit 1 while an alert is firing, 2 on a setup error, 3 if the check itself failed.
    The state is OPS_ALERTS_STATE (root's, as the cron job is): docs/ALERTS.md.
    """
    import logging

    from ops.alerts.check import run_check
    from ops.events.logs import configure_logging

    configure_logging(logging.INFO)  # the log notifier's lines, timestamped, the bot's token redacted
    try:
        report = run_check(load_settings(project_dir), rules=rules, dry_run=dry_run)
    except OpsError:
        raise
    except Exception as exc:  # exit 1 means "an alert is firing": a crash of the check itself is 3, one line
        click.echo(f"error: the alerts check failed unexpectedly ({type(exc).__name__}: {exc})", err=True)
        sys.exit(3)
    if as_json:
        _emit(report.to_dict())
    elif lines := report.lines(quiet):
        click.echo("\n".join(lines))
    sys.exit(0 if report.ok else 1)


@alerts.command("gcp")
@project_dir_option
@click.option("--plan", "action", flag_value="plan", default=True, help="Show what --apply would create or update (default).")
@click.option("--apply", "action", flag_value="apply", help="Create or update what differs from ops/alerts/gcp_policies.yaml.")
@click.option("--prune", is_flag=True, help="Also delete what is labelled managed-by=aistack-ops but no longer in the file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def alerts_gcp(project_dir: Path, action: str, prune: bool, as_json: bool) -> None:
    """Cloud Monitoring as code: uptime check, memory and disk policies, e-mail channels (OPS_GCP_PROJECT)."""
    from ops.alerts.gcp import apply_policies, plan_policies

    result = (apply_policies if action == "apply" else plan_policies)(load_settings(project_dir), prune=prune)
    if as_json:
        _emit(result.to_dict())
    else:
        click.echo("\n".join(result.lines()))


if __name__ == "__main__":
    main()
