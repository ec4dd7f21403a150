"""Slice 11's drills, the decisions on data: where the memory drill draws its line, how big its hog is, when a notice
counts as delivered, the spend drill's Redis database, and which notifiers the verify requires. The drills themselves
run on Docker in tests/stack/test_alerts_on_docker.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ops.alerts.check import CheckReport
from ops.alerts.drills import DrillError, delivery, hog_mb, memory_line, with_database
from ops.alerts.state import AlertNotice, Observations, State, Thresholds, step
from ops.config import load_settings

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
GB_KB = 1024 * 1024


@pytest.mark.parametrize(
    ("before", "during", "hog", "line"),
    [
        (40.0, 46.0, 6.0, 43.0),  # the hog's share and nothing else: halfway
        (40.0, 50.0, 6.0, 47.0),  # another process took 4 points meanwhile: half a hog below the value with it
        (40.0, 44.0, 6.0, 42.0),  # it showed two thirds of its share: halfway still
        (3.5, 4.56, 1.06, 4.03),  # a 256 MB hog on a 24 GB host
    ],
)
def test_the_drills_memory_line_fires_with_the_hog_and_resolves_once_it_is_gone(
    before: float, during: float, hog: float, line: float
) -> None:
    assert memory_line(before, during, hog) == line
    assert before < line < during
    # the real rule with the drill's line and a window of 0 minutes: the newest sample alone, no 5 minutes to wait
    limits = replace(Thresholds(), memory_percent=line, memory_minutes=0.0, resolve_checks=1)  # as drills.check
    state, fired, conditions = step(State(), Observations(memory_percent=during), T0, limits)
    assert [(n.kind, n.key) for n in fired] == [("firing", "memory")]
    assert conditions[0].title == f"memory above {line:g}%"
    _, resolved, _ = step(state, Observations(memory_percent=during - hog), T0 + timedelta(seconds=2), limits)
    assert [(n.kind, n.key) for n in resolved] == [("resolved", "memory")]


def test_the_cron_jobs_five_minute_window_does_not_fire_at_one_sample() -> None:
    _, notices, _ = step(State(), Observations(memory_percent=99.0), T0, Thresholds())
    assert notices == []


def test_a_hog_that_does_not_show_in_the_memory_is_a_drill_error_not_a_guess() -> None:
    with pytest.raises(DrillError, match=r"rose from 40.00% to 42.00% with the hog, less than half the 6.00%"):
        memory_line(40.0, 42.0, 6.0)


@pytest.mark.parametrize(
    ("total_kb", "mb"),
    [(4_025_000, 256), (8 * GB_KB, 512), (24 * GB_KB, 1024), (128 * GB_KB, 1024), (1 * GB_KB, 256)],
)
def test_the_hog_is_256_mb_on_the_vm_and_at_most_1_gb_on_a_larger_host(total_kb: int, mb: int) -> None:
    assert hog_mb(total_kb) == mb


def notice(key: str, channels: tuple[str, ...] = ()) -> AlertNotice:
    return AlertNotice("firing", key, f"(drill) {key} above the line", "detail", T0, T0, channels)


def report(notifiers: tuple[str, ...], sent: list[str], failed: list[str] | None = None) -> CheckReport:
    return CheckReport(notifiers=notifiers, sent=sent, failed=failed or [])


def test_a_notice_is_delivered_when_every_configured_notifier_it_goes_to_took_it() -> None:
    memory, subject = notice("memory"), notice("memory").notice().subject
    both = ("log", "email", "telegram")
    assert delivery(report(both, [f"log: {subject}", f"email: {subject}", f"telegram: {subject}"]), memory) == (
        True,
        "delivered by email, telegram",
    )
    assert delivery(report(("log", "email"), [f"email: {subject}"]), memory) == (True, "delivered by email")
    down = report(both, [f"email: {subject}", "telegram: [aistack] ALERT: another"], [f"telegram: {subject}: 502 Bad Gateway"])
    assert delivery(down, memory) == (False, f"delivered by email; NOT by telegram (telegram: {subject}: 502 Bad Gateway)")


def test_spend_is_delivered_by_e_mail_only_and_not_at_all_without_it() -> None:
    spend = notice("spend:day", ("email",))
    subject = spend.notice().subject
    both = ("log", "email", "telegram")
    assert delivery(report(both, [f"email: {subject}"]), spend) == (True, "delivered by email")
    assert delivery(report(both, [f"email: {subject}", f"telegram: {subject}"]), spend) == (
        False,
        "delivered by email, telegram; also by telegram, where it must not go",
    )
    assert delivery(report(("log", "telegram"), [f"log: {subject}"]), spend) == (
        False,
        "delivered by nothing: no notifier it goes to (email only) is configured",
    )


@pytest.mark.parametrize(
    ("url", "drill"),
    [
        ("redis://:p%40ss@127.0.0.1:6379/0", "redis://:p%40ss@127.0.0.1:6379/15"),
        ("rediss://:pw@redis.example.org:6380", "rediss://:pw@redis.example.org:6380/15"),
        ("unix:///run/redis/redis.sock?db=0&password=pw", "unix:///run/redis/redis.sock?password=pw&db=15"),
    ],
)
def test_the_spend_drill_writes_in_a_redis_database_of_its_own(url: str, drill: str) -> None:
    assert with_database(url, 15) == drill


def notifier_checks(project: Path, env: str) -> list[tuple[str, bool, str]]:
    from ops.slices import slice_11

    (project / "vps.env").write_text(env)
    return [(c.name, c.ok, c.detail) for c in slice_11.notifier_checks(load_settings(project))]


def test_slice_11_needs_one_notifier_and_telegram_is_optional(project: Path) -> None:
    none = notifier_checks(project, "")
    assert [(name, ok) for name, ok, _ in none] == [("notifiers", False)]
    assert none[0][2].startswith("no notifier is configured: set OPS_SMTP_HOST") and "OPS_TELEGRAM_BOT_TOKEN" in none[0][2]

    # e-mail alone (a relay that is not there): no Telegram check, and the notifiers pass; the test notice says it failed
    email = notifier_checks(project, "OPS_SMTP_HOST=127.0.0.1\nOPS_SMTP_PORT=9\nOPS_SMTP_FROM=ops@vm.example.org\n"
                                     "OPS_SMTP_TO=me@example.org\n")  # fmt: skip
    assert [(name, ok) for name, ok, _ in email] == [("notifiers", True), ("test notice by email", False)]
    assert "telegram is not configured: set OPS_TELEGRAM_BOT_TOKEN" in email[0][2] and "(optional)" in email[0][2]
    assert "cannot send through SMTP relay 127.0.0.1:9" in email[1][2]

    # a malformed one fails the verify, even beside a good one: the operator meant to have it
    broken = notifier_checks(project, "OPS_TELEGRAM_BOT_TOKEN=123:abc\nOPS_ALERT_TELEGRAM_CHAT=my-chat\n")
    assert [(name, ok) for name, ok, _ in broken] == [("notifiers", False)]
    assert "Telegram is off: OPS_ALERT_TELEGRAM_CHAT" in broken[0][2]
