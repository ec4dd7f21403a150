"""Secrets stay out of the event log's errors and logs: service URLs and the Telegram bot token (issue #10, 16 and 19)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from ops.config import check_url, load_settings, redact_url
from ops.errors import ConfigError
from ops.events.logs import RedactSecrets, configure_logging, redact

REDIS = ("redis", "rediss", "unix")
EXAMPLE = "redis://:PASSWORD@127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("postgresql://postgres:s3cret@db:5432/app", "postgresql://postgres:***@db:5432/app"),
        ("redis://:s3:cr@et@host:6379/0", "redis://:***@host:6379/0"),  # the last @ ends the password
        ("unix:///run/redis.sock?password=s3cret&db=0", "unix:///run/redis.sock?password=***&db=0"),
        ("redis://:pa/s3cret@host:6379/0", "redis://***"),  # a / ends the host part early: cut it all
        ("redis://:pa#s3cret@host:6379/0", "redis://***"),
        ("redis://user:12345/s3cret@host", "redis://***"),  # parses, but an @ is left after the host
        ("redis://:s3cret@host:99999/0", "redis://***"),
        ("s3cret", "***"),  # not a URL at all: perhaps the password itself
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_redact_url_never_shows_a_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in shown


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://:s3cret@127.0.0.1:6379/0", "must start with redis:// or rediss:// or unix://"),
        ("redis://:pa/s3cret@127.0.0.1:6379/0", "its host or port cannot be read"),
        ("redis://:s3cret@127.0.0.1:6379/0@x", "an @ after the host"),
        ("redis://:s3cret@/0", "names no host"),
    ],
)
def test_check_url_names_the_variable_and_the_problem_without_the_password(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_url("OPS_REDIS_URL", url, REDIS, EXAMPLE)
    message = str(caught.value)
    assert message.startswith("OPS_REDIS_URL") and problem in message and "s3cret" not in message


def test_a_good_url_is_returned_parsed() -> None:
    parts = check_url("OPS_REDIS_URL", "redis://:a%2Fb@127.0.0.1:6380/1", REDIS, EXAMPLE)
    assert (parts.hostname, parts.port, parts.password) == ("127.0.0.1", 6380, "a%2Fb")


def test_events_config_refuses_a_malformed_redis_url_without_echoing_it(project: Path) -> None:
    from ops.events.context import events_config

    (project / "vps.env").write_text("OPS_REDIS_URL='redis://:pa#s3cret@127.0.0.1:6379/0'\n")
    with pytest.raises(ConfigError, match=r"^OPS_REDIS_URL is malformed") as caught:
        events_config(load_settings(project))
    assert "s3cret" not in str(caught.value)


def test_events_config_encodes_a_redis_password_that_would_break_the_url(project: Path) -> None:
    from ops.events.context import events_config

    (project / "vps.env").write_text("REDIS_PASSWORD='a/b#c@d'\n")
    url = events_config(load_settings(project)).redis_url
    assert url == "redis://:a%2Fb%23c%40d@127.0.0.1:6379/0"


TOKEN = "123456:AAHsecretTOKENvalue_-x"


def test_the_bot_token_is_redacted_from_messages_arguments_and_tracebacks() -> None:
    assert (
        redact(f"POST https://api.telegram.org/bot{TOKEN}/getUpdates") == "POST https://api.telegram.org/bot<redacted>/getUpdates"
    )
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "HTTP Request: %s %s", ("POST", f"/bot{TOKEN}/x"), None)
    try:
        raise ValueError(f"bad URL /bot{TOKEN}/getMe")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert RedactSecrets().filter(record) is True  # rewritten, never dropped
    assert record.getMessage() == "HTTP Request: POST /bot<redacted>/x"
    assert TOKEN not in (record.exc_text or "") and "bot<redacted>/getMe" in (record.exc_text or "")
    plain = logging.LogRecord("ops", logging.INFO, __file__, 1, "nothing secret: %d", (3,), None)
    RedactSecrets().filter(plain)
    assert plain.getMessage() == "nothing secret: 3"


def test_configure_logging_quiets_the_http_clients() -> None:
    levels = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    try:
        configure_logging()
        assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("httpcore").getEffectiveLevel() == logging.WARNING
        assert any(isinstance(f, RedactSecrets) for f in logging.getLogger("httpx").filters)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
