"""The alert notifiers against real counterparts: e-mail through a real SMTP server (aiosmtpd) with STARTTLS and a
login, Telegram through the Bot API contract fake (tests/fakes/telegram.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.config import Settings, load_settings
from ops.errors import ServiceError
from ops.notify import Notice, NotifyConfig, alert_config, notify, send
from tests.fakes.server import ThreadedServer
from tests.fakes.telegram import TelegramState, telegram_app
from tests.integration.smtp_server import SmtpServer

pytestmark = pytest.mark.integration
TOKEN = "123456:alerts-test-token"
ALERT = Notice("alert", False, "[aistack] ALERT: disk / above 85%\n/: 91% used", "[aistack] ALERT: disk / above 85%")


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[SmtpServer]:
    with SmtpServer(tmp_path) as server:
        yield server


def settings_with(project: Path, text: str) -> Settings:
    (project / "vps.env").write_text(text)
    return load_settings(project)


def test_an_alert_is_mailed_over_starttls_with_the_relays_login(project: Path, relay: SmtpServer) -> None:
    config = alert_config(settings_with(project, relay.env("me@mail.example.org, oncall@mail.example.org")))
    send("email", config, ALERT)
    [mail] = relay.wait_for(1)
    assert mail.over_tls and mail.login == "ops"
    assert mail.rcpt_tos == ["me@mail.example.org", "oncall@mail.example.org"]
    assert mail.message["Subject"] == "[aistack] ALERT: disk / above 85%"
    assert mail.message["From"] == "ops@vm.example.org" and mail.message["Message-ID"].endswith("@vm.example.org>")
    assert "/: 91% used" in mail.message.get_content()


def test_a_relay_without_starttls_is_refused_before_any_password_is_sent(project: Path, tmp_path: Path) -> None:
    with SmtpServer(tmp_path, starttls=False) as plain:
        config = alert_config(settings_with(project, plain.env()))
        with pytest.raises(ServiceError, match=f"SMTP relay 127.0.0.1:{plain.port} offers no STARTTLS: refusing"):
            send("email", config, ALERT)
        assert plain.received == []


def test_a_wrong_password_an_untrusted_certificate_and_no_relay_are_named_without_the_password(
    project: Path, relay: SmtpServer
) -> None:
    wrong = alert_config(settings_with(project, relay.env() + "OPS_SMTP_PASSWORD=not-the-relay-password\n"))
    with pytest.raises(ServiceError, match="refused the login of OPS_SMTP_USER 'ops': 535") as refused:
        send("email", wrong, ALERT)
    assert "not-the-relay-password" not in str(refused.value)
    untrusted = alert_config(settings_with(project, relay.env() + "OPS_SMTP_CA_FILE=\n"))  # the system's CAs only
    with pytest.raises(ServiceError, match="the TLS handshake failed"):
        send("email", untrusted, ALERT)
    relay.stop()  # the relay goes away
    with pytest.raises(ServiceError, match=f"cannot send through SMTP relay 127.0.0.1:{relay.port}"):
        send("email", alert_config(settings_with(project, relay.env())), ALERT)
    assert relay.received == []


def test_an_alert_goes_to_the_alert_chat_through_the_bot(project: Path) -> None:
    state = TelegramState(TOKEN)
    with ThreadedServer(telegram_app(state)) as api:
        env = f"OPS_TELEGRAM_BOT_TOKEN={TOKEN}\nOPS_TELEGRAM_API={api.url}\nOPS_TELEGRAM_CHAT_IDS=7,8\n"
        send("telegram", alert_config(settings_with(project, env + "OPS_ALERT_TELEGRAM_CHAT=-1001\n")), ALERT)
        assert [(m["chat_id"], m["text"]) for m in state.sent] == [(-1001, "[aistack] ALERT: disk / above 85%\n/: 91% used")]
        long = Notice("alert", False, "x" * 5000, "[aistack] ALERT: long")
        send("telegram", alert_config(settings_with(project, env)), long)  # cut under Telegram's 4,096, to chat 7
        assert state.sent[-1]["chat_id"] == 7 and len(state.sent[-1]["text"]) == 4000
        wrong = alert_config(settings_with(project, env.replace(TOKEN, "123456:revoked")))
        with pytest.raises(ServiceError, match="Telegram sendMessage refused: 401 Unauthorized") as refused:
            send("telegram", wrong, ALERT)
        assert "revoked" not in str(refused.value)


def test_the_backup_jobs_notices_go_where_they_went_before(caplog: pytest.LogCaptureFixture, relay: SmtpServer) -> None:
    """NotifyConfig(ping_url) as the backup jobs build it: the log (and the ping), no e-mail, no Telegram."""
    assert NotifyConfig("").configured() == ("log",)
    assert notify(NotifyConfig(""), Notice("backup", False, "pg_dump was killed")) == []
    assert "backup FAILED: pg_dump was killed" in caplog.text and relay.received == []
