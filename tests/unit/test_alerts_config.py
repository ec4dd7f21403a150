"""The alerts' settings (ops/config.py): e-mail, the Telegram chat, the state file, the watched disks; each bad value
named by its variable; and the budgets the spend alerts and `ops cost` compare against (litellm-config.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.config import Settings, SmtpSettings, TelegramAlertSettings, load_settings
from ops.cost import Budgets, Spend, budgets
from ops.errors import ConfigError
from tests.conftest import REPO

SMTP = "OPS_SMTP_HOST=smtp.relay.org\nOPS_SMTP_FROM=ops@vm.org\nOPS_SMTP_TO=me@mail.org, you@mail.org\n"


def settings(project: Path, text: str) -> Settings:
    (project / "vps.env").write_text(text)
    return load_settings(project)


def test_no_smtp_host_means_no_email_and_a_relay_is_read_whole(project: Path) -> None:
    assert settings(project, "").smtp is None
    relay = settings(project, SMTP + "OPS_SMTP_USER=ops\nOPS_SMTP_PASSWORD=s3cr3t-from-the-relay\n").smtp
    assert relay == SmtpSettings(
        "smtp.relay.org", 587, "ops@vm.org", ("me@mail.org", "you@mail.org"), "ops", "s3cr3t-from-the-relay"
    )
    assert "s3cr3t" not in repr(relay)  # never in a log or a traceback


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("OPS_SMTP_PORT=25x\n", "OPS_SMTP_PORT must be a port number (587 for STARTTLS), got '25x'"),
        ("OPS_SMTP_PORT=70000\n", "OPS_SMTP_PORT must be a port number"),
        ("OPS_SMTP_PORT=465\n", "OPS_SMTP_PORT=465 is SMTP over implicit TLS, which ops does not speak: use 587 (STARTTLS)"),
        ("OPS_SMTP_TO=\n", "OPS_SMTP_TO is empty: name who gets the alerts"),
        ("OPS_SMTP_TO=me@mail.org,nobody\n", "OPS_SMTP_TO must be an e-mail address like alerts@example.org, got 'nobody'"),
        ("OPS_SMTP_FROM=\n", "OPS_SMTP_FROM must be an e-mail address"),
        ("OPS_SMTP_USER=ops\n", "OPS_SMTP_PASSWORD is empty or a placeholder while OPS_SMTP_USER is set"),
        ("OPS_SMTP_USER=ops\nOPS_SMTP_PASSWORD=changeme\n", "OPS_SMTP_PASSWORD is empty or a placeholder"),
    ],
)
def test_a_bad_smtp_setting_is_named(project: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _ = settings(project, SMTP + extra).smtp


def test_the_alert_chat_is_its_own_or_the_first_allowed_one(project: Path) -> None:
    bot = "OPS_TELEGRAM_BOT_TOKEN=123:abc\n"
    assert settings(project, "OPS_TELEGRAM_CHAT_IDS=7\n").alert_telegram is None  # no bot
    assert settings(project, bot).alert_telegram is None  # no chat
    assert settings(project, bot + "OPS_TELEGRAM_CHAT_IDS=7,8\n").alert_telegram == TelegramAlertSettings("123:abc", 7)
    chosen = settings(project, bot + "OPS_TELEGRAM_CHAT_IDS=7\nOPS_ALERT_TELEGRAM_CHAT=-1001\n").alert_telegram
    assert chosen is not None and chosen.chat_id == -1001
    with pytest.raises(ConfigError, match="OPS_ALERT_TELEGRAM_CHAT: '@ops' is not a Telegram chat id"):
        _ = settings(project, bot + "OPS_ALERT_TELEGRAM_CHAT=@ops\n").alert_telegram


def test_the_state_file_and_watched_disks(project: Path) -> None:
    default = settings(project, "")
    assert default.alerts_state_file == Path("/var/lib/aistack/alerts.json")  # root's, like the cron job
    assert default.alert_disk_paths == (project.resolve(), Path("/var/lib/docker"))
    moved = settings(project, "OPS_ALERTS_STATE=state/alerts.json\nOPS_ALERT_DISK_PATHS=/, /srv\n")
    assert moved.alerts_state_file == project.resolve() / "state" / "alerts.json"
    assert moved.alert_disk_paths == (Path("/"), Path("/srv"))


def test_the_shipped_budgets_are_the_notes_and_the_plans() -> None:
    found = budgets(load_settings(REPO))
    assert (found.daily, found.day_warn, found.day_alert, found.monthly, found.month_alert) == (5.0, 4.0, 10.0, 55.0, 40.0)
    assert found.daily_by_group == {"gpt-4": 2.0, "claude-3": 1.5, "gemini-2": 0.5, "cheap": 0.5, "smart": 0.5}
    assert found.monthly_by_provider == {"openai": 22.0, "anthropic": 16.5, "gemini": 5.5, "openrouter": 11.0}


def test_the_cost_report_says_its_source_and_each_figure_against_its_budget() -> None:
    from ops.cost import CostReport

    spend = Spend(
        "redis",
        "LiteLLM's budget counters in Redis (its database is off)",
        {("gpt-4", "openai"): 1.25, ("cheap", "openrouter"): 0.05},
        {("", "openai"): 12.0, ("", "openrouter"): 0.5},
    )
    shipped = Budgets(5.0, {"gpt-4": 2.0, "cheap": 0.5}, 55.0, {"openai": 22.0, "openrouter": 11.0}, {})
    text = "\n".join(CostReport(spend, shipped).lines())
    assert "source: LiteLLM's budget counters in Redis (its database is off)" in text
    assert "today: $1.30 of the $5.00 daily budget (alerts above $4.00 and $10.00)" in text
    assert "  gpt-4                  $  1.2500 of $2.00" in text
    assert "this month: $12.50 of the $55.00 stop (alert above $40.00)" in text
    assert "  provider openai        $ 12.0000 of $22.00" in text
    assert CostReport(spend, shipped).to_dict()["spend"]["month"]["by_provider"] == {"openai": 12.0, "openrouter": 0.5}
