"""Local mode: the gateway for real on this machine, with no keys, no Docker and no cloud.

Starts PostgreSQL (with the stack's own database init script), Redis, the
mock provider and the real LiteLLM proxy with the project's
litellm-config.yaml; sends one request to each model group and reports the
answer and where it was routed; stops everything it started on exit or
Ctrl-C.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from ops.config import Settings
from ops.errors import ServiceError
from ops.gateway.litellm_config import model_groups
from ops.local.processes import GcsEmulatorServer, LiteLLMServer, MockProviderServer, PostgresServer, RedisServer

INIT_SCRIPT = Path("postgres/init/create-databases.sh")
APP_DATABASES = ("litellm", "n8n", "langfuse")


@dataclass(frozen=True)
class Routed:
    """One model group's answer through the gateway."""

    group: str
    status: int
    answer: str
    deployment: str
    api_base: str
    fallbacks: int


def create_app_databases(project_dir: Path, postgres: PostgresServer) -> dict[str, str]:
    """Run the stack's database init script against postgres; return each app role's generated password."""
    passwords = {db: secrets.token_hex(16) for db in APP_DATABASES}
    env = {**postgres.client_env(), **{f"{db.upper()}_DB_PASSWORD": pw for db, pw in passwords.items()}}
    proc = subprocess.run(
        ["bash", str(project_dir / INIT_SCRIPT)], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        raise ServiceError(f"{INIT_SCRIPT} failed: {(proc.stdout + proc.stderr).strip()[-600:]}")
    return passwords


def ask(gateway: LiteLLMServer, group: str, prompt: str) -> Routed:
    """Send one chat completion for group through the gateway; return what answered it."""
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {gateway.master_key}"},
        json={"model": group, "messages": [{"role": "user", "content": prompt}]},
        timeout=60,
    )
    body = response.json()
    if response.status_code == 200:
        answer = body["choices"][0]["message"]["content"]
        deployment = answer.split("]")[0].removeprefix("[mock ") if answer.startswith("[mock ") else "?"
    else:
        answer, deployment = str(body.get("error", {}).get("message", body))[:200], "-"
    return Routed(
        group=group,
        status=response.status_code,
        answer=answer,
        deployment=deployment,
        api_base=response.headers.get("x-litellm-model-api-base", "-"),
        fallbacks=int(response.headers.get("x-litellm-attempted-fallbacks", "0") or 0),
    )


def backup_and_drill(settings: Settings, postgres: PostgresServer, gcs: GcsEmulatorServer) -> str:
    """Back up every database of postgres into gcs's bucket, restore it into scratch databases, compare; say how it went.

    Raise OpsError if the backup fails.
    """
    from ops.backup.context import backup_context
    from ops.backup.drill import run_drill
    from ops.backup.run import run_backup

    local = {"OPS_BACKUP_BUCKET": gcs.bucket, "OPS_BACKUP_GCS_ENDPOINT": gcs.url, "OPS_POSTGRES_URL": postgres.dsn()}
    ctx = backup_context(dataclasses.replace(settings, env={**settings.env, **local, "OPS_BACKUP_AGE_RECIPIENTS": ""}))
    report = run_backup(ctx, "manual", ["postgres"])
    drill = run_drill(ctx, report.run_id)
    same = sum(t.ok for t in drill.tables)
    verdict = "drill OK" if drill.ok else "drill FAILED: " + "; ".join(drill.problems)
    return (
        f"  backup {report.run_id}: {len(report.entries)} objects, {report.size} bytes; "
        f"{verdict}: {drill.databases} databases restored, {same}/{len(drill.tables)} tables identical"
    )


def run_demo(
    settings: Settings,
    keep_running: bool = False,
    echo: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> list[Routed]:
    """Start the local stack, route one request per model group, and return the answers.

    With keep_running, wait (until Ctrl-C or stop is set) before stopping
    everything. Raise ServiceError if a service does not start, ConfigError
    if litellm-config.yaml is unreadable.
    """
    groups = model_groups(settings.litellm_config)
    results: list[Routed] = []
    with contextlib.ExitStack() as started:
        echo("starting PostgreSQL 18 ...")
        postgres = started.enter_context(PostgresServer())
        create_app_databases(settings.project_dir, postgres)
        echo(f"  127.0.0.1:{postgres.port}: databases {', '.join(APP_DATABASES)} created by {INIT_SCRIPT}")
        echo("starting Redis 7 ...")
        redis = started.enter_context(RedisServer())
        echo(f"  127.0.0.1:{redis.port} (password, AOF everysec)")
        echo("starting the mock provider (OpenAI, Anthropic and Gemini wire formats) ...")
        mock = started.enter_context(MockProviderServer())
        echo(f"  {mock.url}")
        echo(f"starting LiteLLM with {settings.litellm_config.name} ...")
        env = {
            **mock.provider_env(),
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(redis.port),
            "REDIS_PASSWORD": redis.password,
        }
        gateway = started.enter_context(LiteLLMServer(settings.litellm_config, env))
        echo(f"  {gateway.url} (Langfuse is not part of local mode: tracing is off)")
        echo("")
        for group in groups:
            routed = ask(gateway, group, f"Hello {group}, what are you?")
            results.append(routed)
            via = f"{routed.deployment} at {routed.api_base}"
            if routed.fallbacks:
                via += f" after {routed.fallbacks} fallback(s)"
            echo(f"{group:<10} {routed.status}  -> {via}")
            echo(f"{'':<15}{routed.answer}")
        echo("")
        echo("backing up the local Postgres to a GCS emulator, then a restore drill ...")
        gcs = started.enter_context(GcsEmulatorServer())
        echo(f"  bucket {gcs.bucket} at {gcs.url}")
        echo(backup_and_drill(settings, postgres, gcs))
        if keep_running:
            with contextlib.suppress(KeyboardInterrupt):  # entered first: Ctrl-C right after the prompt is a clean stop
                echo("")
                echo(f"gateway: {gateway.url}/v1  key: {gateway.master_key}")
                echo("press Ctrl-C to stop everything")
                (stop or threading.Event()).wait()
        echo("stopping ...")
    return results
