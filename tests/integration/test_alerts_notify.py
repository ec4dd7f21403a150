"""The alert notifiers against real counterparts: e-mail through a real SMTP server (aiosmtpd) with STARTTLS and a
login, Telegram through the Bot API contract fake (tests/fakes/telegram.py). The notifiers' configuration is the one
the cron job's check builds (ops.alerts.check.notifiers)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from ops.alerts.check import notifiers, run_check
from ops.alerts.state import Thresholds
from ops.config import Settings, load_settings
from ops.errors import ServiceError
from ops.notify import Notice, NotifyConfig, PermanentNotifyError, dispatch, notify, send
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


def alert_config(settings: Settings) -> NotifyConfig:
    """The notifiers as `ops alerts check` (the cron job) configures them; every setting here is well-formed."""
    problems: list[str] = []
    config = notifiers(settings, problems)
    assert problems == []
    return config


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
    assert not isinstance(refused.value, PermanentNotifyError)  # a fixed password sends what waits in the outbox
    untrusted = alert_config(settings_with(project, relay.env() + "OPS_SMTP_CA_FILE=\n"))  # the system's CAs only
    with pytest.raises(ServiceError, match="the TLS handshake failed"):
        send("email", untrusted, ALERT)
    relay.stop()  # the relay goes away
    with pytest.raises(ServiceError, match=f"cannot send through SMTP relay 127.0.0.1:{relay.port}"):
        send("email", alert_config(settings_with(project, relay.env())), ALERT)
    assert relay.received == []


def test_a_relay_whose_refusal_echoes_the_login_gets_no_password_into_the_error(project: Path, tmp_path: Path) -> None:
    with SmtpServer(tmp_path, echo=True) as echoing:
        wrong = alert_config(settings_with(project, echoing.env() + "OPS_SMTP_PASSWORD=not-the-relay-password\n"))
        with pytest.raises(ServiceError, match=re.escape("refused the login of OPS_SMTP_USER 'ops': 535 5.7.8")) as refused:
            send("email", wrong, ALERT)
    assert "ops:<password> not accepted" in str(refused.value)  # the relay's reply, the password cut out
    assert "not-the-relay-password" not in str(refused.value)


def test_a_refused_recipient_gets_the_others_their_mail_once_and_is_named(
    project: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A typo in OPS_SMTP_TO: the relay takes the mail for the others and refuses it. The notice counts as sent (the
    outbox does not mail everyone again every minute) and the refused address is named."""
    typo = "oncall@mail.exmaple.org"
    with SmtpServer(tmp_path, refuse=frozenset({typo})) as relay:
        env = relay.env(f"me@mail.example.org, {typo}")
        config = alert_config(settings_with(project, env))
        [problem] = dispatch("email", config, ALERT)
        assert problem == (
            f"SMTP relay 127.0.0.1:{relay.port} refused {typo} (550 5.1.1 <{typo}>: Recipient address rejected: "
            "User unknown); the others got the mail: see OPS_SMTP_TO"
        )
        assert [m.rcpt_tos for m in relay.wait_for(1)] == [["me@mail.example.org"]]

        # through the cron job's check and its outbox: the alert fires, goes out once, and stays sent
        settings = settings_with(project, env + f"OPS_ALERTS_STATE={tmp_path / 'alerts.json'}\nOPS_ALERT_DISK_PATHS={project}\n")
        firing = replace(Thresholds(), disk_percent=0.0)
        with caplog.at_level(logging.WARNING, logger="ops.notify"):
            first = run_check(settings, rules=("disk",), thresholds=firing)
        assert f"email: [aistack] ALERT: disk {project} above 0%" in first.sent and first.failed == []
        assert f"refused {typo} (550" in caplog.text
        second = run_check(settings, rules=("disk",), thresholds=firing)
        assert (second.firing, second.sent, second.failed) == ([f"disk:{project}"], [], [])
        assert len(relay.received) == 2  # the dispatch above and the alert: nobody got the alert twice


def test_a_message_refused_for_good_is_a_permanent_error_and_every_recipient_refused_too(project: Path, tmp_path: Path) -> None:
    with SmtpServer(tmp_path, data_reply="554 5.7.1 Message rejected as spam") as strict:
        spam = re.escape(f"SMTP relay 127.0.0.1:{strict.port} answered 554 5.7.1 Message rejected as spam")
        with pytest.raises(PermanentNotifyError, match=spam):
            send("email", alert_config(settings_with(project, strict.env())), ALERT)
    with SmtpServer(tmp_path, refuse=frozenset({"me@mail.example.org"})) as refusing:
        everyone = re.escape("refused every recipient: me@mail.example.org (550 5.1.1 <me@mail.example.org>")
        with pytest.raises(PermanentNotifyError, match=everyone):
            send("email", alert_config(settings_with(project, refusing.env())), ALERT)
        assert refusing.received == []


def test_an_alert_goes_to_the_alert_chat_through_the_bot(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = TelegramState(TOKEN)
    with ThreadedServer(telegram_app(state)) as api:
        env = f"OPS_TELEGRAM_BOT_TOKEN={TOKEN}\nOPS_TELEGRAM_API={api.url}\nOPS_TELEGRAM_CHAT_IDS=7,8\n"
        send("telegram", alert_config(settings_with(project, env + "OPS_ALERT_TELEGRAM_CHAT=-1001\n")), ALERT)
        assert [(m["chat_id"], m["text"]) for m in state.sent] == [(-1001, "[aistack] ALERT: disk / above 85%\n/: 91% used")]
        long = Notice("alert", False, "x" * 5000, "[aistack] ALERT: long")
        send("telegram", alert_config(settings_with(project, env)), long)  # cut under Telegram's 4,096, to chat 7
        assert state.sent[-1]["chat_id"] == 7 and len(state.sent[-1]["text"]) == 4000
        wrong = alert_config(settings_with(project, env.replace(TOKEN, "123456:revoked")))
        # httpx logs each request's URL at INFO, and the Bot API's URL holds the token: the cron job's log must not
        # on httpx's own logger: an observer started earlier in this process (configure_logging) left it at WARNING
        with (
            caplog.at_level(logging.INFO, logger="httpx"),
            pytest.raises(ServiceError, match="Telegram sendMessage refused: 401 Unauthorized"),
        ):
            send("telegram", wrong, ALERT)
        assert f"{api.url}/bot<redacted>/sendMessage" in caplog.text  # the request's line was logged
        assert "revoked" not in caplog.text and TOKEN.split(":")[1] not in caplog.text


def test_the_backup_jobs_notices_go_where_they_went_before(caplog: pytest.LogCaptureFixture, relay: SmtpServer) -> None:
    """NotifyConfig(ping_url) as the backup jobs build it: the log (and the ping), no e-mail, no Telegram."""
    assert NotifyConfig("").configured() == ("log",)
    assert notify(NotifyConfig(""), Notice("backup", False, "pg_dump was killed")) == []
    assert "backup FAILED: pg_dump was killed" in caplog.text and relay.received == []
