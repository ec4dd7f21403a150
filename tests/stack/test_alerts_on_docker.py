"""Slice 11 on Docker, as `make slice-11` runs it: `ops slice 11 --apply` fires each alert on purpose on the stack.

The verify's drills (ops/alerts/drills.py) on the stand-in stack, through the CLI: a memory hog in a container of
the redis service's image, a full scratch tmpfs in another, qdrant (the stand-in is the Qdrant fake) stopped and
started again, LiteLLM's budget counters written into the drill's own Redis database. Notices go to a real SMTP
server (aiosmtpd with STARTTLS and a login) and to the Telegram Bot API's contract fake, both on loopback, as the
relay and the Bot API are reached from the VM. Afterwards nothing of the drills is left: no drill container,
qdrant running and answering, the cron job's state as its own check left it, LiteLLM's counters in Redis as they
were.
"""

from __future__ import annotations

import json
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from ops.alerts.drills import DRILL_DB, LABEL
from ops.health import run_health
from tests.conftest import REPO
from tests.fakes.server import ThreadedServer
from tests.fakes.telegram import TelegramState, telegram_app
from tests.integration.smtp_server import SmtpServer
from tests.stack.conftest import StackProject
from tests.stack.test_n8n_on_docker import failed, ops_slice

pytestmark = pytest.mark.stack
TOKEN = "123456:alerts-drill-token"
CHAT = 4343
DRILLS = ["memory", "disk", "health:qdrant", "spend:day-warn", "spend:day", "spend:month"]
WITHIN = 120  # seconds for a drill to reach the moment a test interrupts it (it takes a few)


@dataclass
class AlertsStack:
    project: StackProject
    relay: SmtpServer
    bot: TelegramState
    state: Path  # the cron job's state file

    def litellm_redis(self, db: int = 0) -> redis.Redis:
        password = self.project.settings.effective_env["REDIS_PASSWORD"]
        return redis.Redis(port=self.project.redis_port, password=password, db=db, decode_responses=True)


@pytest.fixture(scope="module")
def alerts_stack(module_stack_project: StackProject, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertsStack]:
    """The module's stack with redis and qdrant up, the SMTP server and the Bot API fake, slice 11's settings."""
    project = module_stack_project
    project.compose("up", "--detach", "--wait", "--wait-timeout", "120", "redis", "qdrant")
    shutil.copytree(REPO / "alerts", project.dir / "alerts")
    (project.dir / ".venv").symlink_to(REPO / ".venv")  # the job runs "$OPS_PROJECT_DIR/.venv/bin/ops", as cron does
    state = TelegramState(TOKEN)
    with SmtpServer(tmp_path_factory.mktemp("relay")) as relay, ThreadedServer(telegram_app(state)) as bot:
        with (project.dir / "vps.env").open("a") as env:
            env.write(
                relay.env() + f"OPS_TELEGRAM_BOT_TOKEN={TOKEN}\nOPS_TELEGRAM_API={bot.url}\nOPS_ALERT_TELEGRAM_CHAT={CHAT}\n"
                f"OPS_ALERTS_CRON_FILE={project.dir / 'cron.d' / 'aistack-alerts'}\n"
                f"OPS_ALERTS_STATE={project.dir / 'alerts.json'}\nOPS_ALERTS_LOG={project.dir / 'alerts.log'}\n"
                f"OPS_ALERT_DISK_PATHS={project.dir}\n"
            )
        yield AlertsStack(project, relay, state, project.dir / "alerts.json")


def subjects(stack: AlertsStack) -> tuple[list[str], list[str]]:
    """The subjects the SMTP server received and the first lines Telegram's chat got, in order."""
    mail = [m.message["Subject"] for m in stack.relay.received]
    chat = [m["text"].splitlines()[0] for m in stack.bot.sent if m["chat_id"] == CHAT]
    return mail, chat


def test_make_slice_11_fires_each_alert_on_purpose_sees_it_delivered_and_resolved_and_leaves_nothing(
    alerts_stack: AlertsStack,
) -> None:
    stack, project = alerts_stack, alerts_stack.project
    litellm = stack.litellm_redis()
    # the budget limiter's counters as LiteLLM leaves them after some spend (source: litellm 1.100.5
    # router_strategy/budget_limiter.py); the drill must neither change nor read them
    litellm.set("deployment_spend:9f2c:1d", "1.25")
    litellm.set("deployment_budget_start_time:9f2c", "1764000000.0")
    litellm.set("provider_spend:openai:30d", "3.5")
    counters = {k: litellm.get(k) for k in litellm.scan_iter("*")}
    qdrant = project.compose("ps", "--format", "{{.ID}}", "qdrant").stdout.strip()

    applied = ops_slice(project, "11", "--apply", "--yes")

    assert applied["outcome"] == "ok" and not failed(applied), applied
    checks = {c["name"]: c["detail"] for c in applied["checks"]}
    assert list(checks) == ["job installed", "the check runs as cron runs it", "notifiers", "test notice by email",
                            "test notice by telegram", *DRILLS]  # fmt: skip
    for name in DRILLS:
        assert "fired: " in checks[name] and "resolved: " in checks[name], checks[name]
    for name in ("memory", "disk", "health:qdrant"):
        assert checks[name].count("delivered by email, telegram") == 2, checks[name]
    for name in DRILLS[3:]:
        assert checks[name].count("delivered by email") == 2 and "telegram" not in checks[name], checks[name]  # e-mail only
    assert "largest containers: memory-drill" in checks["memory"]  # the hog, as the rule names the largest
    assert "fired: qdrant failed 3 checks in a row" in checks["health:qdrant"]

    mail, chat = subjects(stack)
    for title in ("memory above", "disk /proc/", "qdrant failing its health check", "the day's spend above $4.00",
                  "the day's spend above $10.00", "the month's spend above $40.00"):  # fmt: skip
        for kind in ("ALERT", "RESOLVED"):
            wanted = f"[aistack] {kind}: (drill) {title}"
            assert sum(s.startswith(wanted) for s in mail) == 1, (wanted, mail)
            assert sum(s.startswith(wanted) for s in chat) == (0 if "spend" in title else 1), (wanted, chat)

    # nothing left: no drill container, qdrant the same container, running and answering
    assert drill_containers(project) == ""
    assert project.compose("ps", "--format", "{{.ID}} {{.State}}", "qdrant").stdout.split() == [qdrant, "running"]
    assert run_health(project.settings, only=("qdrant",)).ok
    # the cron job's state is its own check's (one memory sample, nothing firing), never the drills'
    cron: dict[str, Any] = json.loads(stack.state.read_text())
    assert (len(cron["memory"]), cron["alerts"], cron["outbox"], cron["health"]["qdrant"]) == (1, {}, [], 0)
    # LiteLLM's counters as they were; the drill's database empty
    assert {k: litellm.get(k) for k in litellm.scan_iter("*")} == counters
    assert stack.litellm_redis(DRILL_DB).dbsize() == 0


def drill_containers(project: StackProject) -> str:
    """The ids of the project's drill containers, running or not."""
    filters = ("--filter", f"label={LABEL}", "--filter", f"label=com.docker.compose.project={project.name}")
    return subprocess.run(["docker", "ps", "--all", "--quiet", *filters], capture_output=True, text=True, check=True).stdout


def verify_killed_at(project: StackProject, *event: str) -> tuple[int, str]:
    """Run `ops slice 11 --verify`, send it SIGTERM the moment Docker reports the event (`docker events` filters);
    return its exit status and stderr once it has ended."""
    argv = ["docker", "events", "--format", "{{.Status}} {{.ID}}", *(f"--filter={f}" for f in event)]
    events = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        ops = subprocess.Popen([sys.executable, "-m", "ops.cli", "slice", "11", "--verify", "--project-dir", str(project.dir)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert events.stdout is not None
        seen, _, _ = select.select([events.stdout], [], [], WITHIN)
        ops.send_signal(signal.SIGTERM)
        _, stderr = ops.communicate(timeout=WITHIN)
        assert seen, f"the drill never got to {event}: {stderr[-2000:]}"
        return ops.returncode, stderr
    finally:
        events.kill()
        events.wait()


def test_sigterm_mid_drill_removes_the_hog_and_starts_qdrant_again(alerts_stack: AlertsStack) -> None:
    """What a dropped ssh session or `systemctl stop` does to `make slice-11` while a drill holds the stack."""
    project = alerts_stack.project
    status, stderr = verify_killed_at(project, f"label={LABEL}", "label=com.docker.compose.service=memory-drill", "event=start")
    assert status == 128 + signal.SIGTERM and "error: slice 11: interrupted by SIGTERM" in stderr, stderr
    assert drill_containers(project) == ""

    qdrant = project.compose("ps", "--format", "{{.ID}}", "qdrant").stdout.strip()
    status, stderr = verify_killed_at(project, f"container={qdrant}", "event=die")
    assert status == 128 + signal.SIGTERM and "error: slice 11: interrupted by SIGTERM" in stderr, stderr
    assert project.compose("ps", "--format", "{{.ID}} {{.State}}", "qdrant").stdout.split() == [qdrant, "running"]
    assert drill_containers(project) == ""
