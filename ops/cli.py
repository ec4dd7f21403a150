"""The `ops` command line: click groups only; each command calls one library function."""

from __future__ import annotations

import json
import sys
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
    from ops.secrets import init_secrets

    settings = load_settings(project_dir)
    values = init_secrets(settings.env_example, settings.env_file, dry_run=dry_run)
    verb = "would write" if dry_run else "wrote"
    click.echo(f"{verb} {settings.env_file} (mode 600) with {len(values)} generated secrets")
    click.echo("next: set the domains, ACME_EMAIL and your provider keys in it, then run `ops doctor`")


@main.command()
@project_dir_option
@click.option("--keep-running", is_flag=True, help="After the requests, keep the stack up until Ctrl-C.")
def demo(project_dir: Path, keep_running: bool) -> None:
    """Local mode: real LiteLLM, Postgres and Redis with a mock provider; no keys, no Docker."""
    import signal

    from ops.local.demo import run_demo

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwind and stop every child, as Ctrl-C does

    signal.signal(signal.SIGTERM, _terminate)
    settings = load_settings(project_dir)
    run_demo(settings, keep_running=keep_running, echo=click.echo)


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


@main.command("slice")
@project_dir_option
@click.argument("number", type=int)
@click.option("--verify", "action", flag_value="verify", default=True, help="Check the slice's success criteria (default).")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def slice_command(project_dir: Path, number: int, action: str, as_json: bool) -> None:
    """Run a slice of the plan against the running stack; exit 1 if a check fails."""
    from ops.slices import run_verify
    from ops.slices.base import Target

    report = run_verify(number, Target.from_settings(load_settings(project_dir)))
    if as_json:
        _emit(report.to_dict())
    else:
        click.echo(f"slice {report.number}: {report.title}")
        for check in report.checks:
            click.echo(f"  {'PASS' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    sys.exit(0 if report.ok else 1)


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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_gateway(project_dir: Path, requests: int, concurrencies: tuple[int, ...], as_json: bool) -> None:
    """Direct upstream vs LiteLLM (shipped and minimal config): throughput, latency, errors, memory."""
    from ops.bench.gateway import run_gateway_bench
    from ops.output import gateway_bench_text

    result = run_gateway_bench(load_settings(project_dir), requests, tuple(concurrencies))
    if as_json:
        _emit(result.to_dict())
    else:
        click.echo(gateway_bench_text(result))


if __name__ == "__main__":
    main()
