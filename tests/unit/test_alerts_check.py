"""ops.alerts.check.run_check: one check end to end on a real state file, with the notifiers and the stack's
sources replaced (the notifiers themselves are tested against a real SMTP server and the Bot API fake in
tests/integration/test_alerts.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ops.alerts.check import Sources, run_check
from ops.alerts.state import Thresholds, locked
from ops.backup.context import BackupContext
from ops.config import Settings, load_settings
from ops.cost import Spend
from ops.errors import OpsError, ServiceError
from ops.notify import Notice, NotifyConfig
from tests.unit.cli import run_ops

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
NOTIFIERS = (
    "OPS_SMTP_HOST=127.0.0.1\nOPS_SMTP_FROM=ops@vm.example.org\nOPS_SMTP_TO=me@example.org\n"
    "OPS_TELEGRAM_BOT_TOKEN=123:abc\nOPS_ALERT_TELEGRAM_CHAT=42\n"
)
FULL = replace(Thresholds(), disk_percent=0.0)  # every filesystem is above 0%: the disk alert fires
EMPTY = replace(Thresholds(), disk_percent=100.0, resolve_checks=1)  # none is above 100%: it resolves at once


@dataclass
class Outbox:
    """The notifiers: what each was asked to send, and which are down."""

    sent: list[tuple[str, str]] = field(default_factory=list)
    down: set[str] = field(default_factory=set)
    crash_on: str = ""  # the process dies (SIGKILL, cron's timeout) while sending through this one

    def send(self, channel: str, config: NotifyConfig, notice: Notice) -> None:
        if channel == self.crash_on:
            self.crash_on = ""
            raise KeyboardInterrupt  # stands for the process dying mid-send: nothing after it runs
        if channel in self.down:
            raise ServiceError(f"{channel} is down")
        self.sent.append((channel, notice.subject))


def settings_for(project: Path, extra: str = "") -> Settings:
    (project / "vps.env").write_text(NOTIFIERS + f"OPS_ALERTS_STATE={project / 'alerts.json'}\n" + extra)
    return load_settings(project)


def check(settings: Settings, outbox: Outbox, at: datetime, limits: Thresholds = FULL) -> list[str]:
    return run_check(settings, rules=("disk",), thresholds=limits, sources=Sources(send=outbox.send), now=at).sent


def test_a_check_killed_mid_send_sends_that_notice_again_and_loses_none(project: Path) -> None:
    settings = settings_for(project, f"OPS_ALERT_DISK_PATHS={project}\n")
    outbox = Outbox(crash_on="email")
    with pytest.raises(KeyboardInterrupt):
        check(settings, outbox, T0)
    state = json.loads(settings.alerts_state_file.read_text())
    assert [(o["channel"], o["status"]) for o in state["outbox"]] == [("email", "sending"), ("telegram", "pending")]
    assert state["alerts"]  # the alert is recorded as firing: the next check does not fire it again

    sent = check(settings, outbox, T0 + timedelta(minutes=1))
    subject = f"[aistack] ALERT: disk {project} above 0%"
    assert sent == [f"email: {subject}", f"telegram: {subject}"]
    assert outbox.sent == [("log", subject), ("email", subject), ("telegram", subject)]
    assert check(settings, outbox, T0 + timedelta(minutes=2)) == []  # once


def test_a_notifier_down_keeps_its_notices_in_order_and_the_others_go_on(project: Path) -> None:
    settings = settings_for(project, f"OPS_ALERT_DISK_PATHS={project}\n")
    outbox = Outbox(down={"email"})
    check(settings, outbox, T0)
    check(settings, outbox, T0 + timedelta(minutes=1), EMPTY)
    assert [c for c, _ in outbox.sent] == ["log", "telegram", "log", "telegram"]
    outbox.down.clear()
    sent = check(settings, outbox, T0 + timedelta(minutes=2), EMPTY)
    assert [s.split(" ")[:3] for s in sent] == [["email:", "[aistack]", "ALERT:"], ["email:", "[aistack]", "RESOLVED:"]]


def test_a_notice_no_notifier_took_in_a_day_is_dropped_and_said(project: Path) -> None:
    settings = settings_for(project, f"OPS_ALERT_DISK_PATHS={project}\n")
    outbox = Outbox(down={"email"})
    check(settings, outbox, T0)
    report = run_check(
        settings, rules=("disk",), thresholds=FULL, sources=Sources(send=outbox.send), now=T0 + timedelta(hours=25)
    )
    assert (
        len(report.dropped) == 1 and "no notifier took it in 24 h" in report.dropped[0] and "email is down" in report.dropped[0]
    )
    assert report.failed == [f"email: [aistack] STILL FIRING for 25 h 0 min: disk {project} above 0%: email is down"]


def test_a_malformed_smtp_setting_leaves_telegram_and_the_log_sending(project: Path) -> None:
    settings = settings_for(project, f"OPS_ALERT_DISK_PATHS={project}\nOPS_SMTP_PORT=smtp\n")
    outbox = Outbox()
    report = run_check(settings, rules=("disk",), thresholds=FULL, sources=Sources(send=outbox.send), now=T0)
    assert report.notifiers == ("log", "telegram")
    assert report.problems == ["e-mail is off: OPS_SMTP_PORT must be a port number (587 for STARTTLS), got 'smtp'"]
    assert [c for c, _ in outbox.sent] == ["log", "telegram", "log", "telegram"]
    assert outbox.sent[-1] == ("telegram", "[aistack] NOTICE: notifier email is off")


def test_a_typo_in_the_smtp_settings_keeps_the_queued_mails_until_it_is_fixed(project: Path) -> None:
    settings = settings_for(project, f"OPS_ALERT_DISK_PATHS={project}\n")
    outbox = Outbox(down={"email"})
    check(settings, outbox, T0)  # the alert's e-mail waits in the outbox
    broken = settings_for(project, f"OPS_ALERT_DISK_PATHS={project}\nOPS_SMTP_PORT=smtp\n")
    outbox.down.clear()
    first = run_check(broken, rules=("disk",), thresholds=FULL, sources=Sources(send=outbox.send), now=T0 + timedelta(minutes=1))
    again = run_check(broken, rules=("disk",), thresholds=FULL, sources=Sources(send=outbox.send), now=T0 + timedelta(minutes=2))
    assert first.dropped == [] and again.dropped == []
    assert [s for c, s in outbox.sent if "NOTICE" in s] == ["[aistack] NOTICE: notifier email is off"] * 2  # log, telegram
    sent = check(settings_for(project, f"OPS_ALERT_DISK_PATHS={project}\n"), outbox, T0 + timedelta(minutes=3))
    assert sent == [f"email: [aistack] ALERT: disk {project} above 0%"]


def test_a_second_check_while_one_runs_does_nothing(project: Path) -> None:
    settings = settings_for(project)
    with locked(settings.alerts_state_file), pytest.raises(OpsError, match="another `ops alerts check` is running"):
        check(settings, Outbox(), T0)


GOOD_ALERT = {"key": "disk:/", "title": "t", "detail": "d", "since": T0.isoformat(), "notified": T0.isoformat()}
GOOD_STATE = {"format": 1, "alerts": {}, "memory": [], "health": {}, "outbox": [], "cache": {}}
MALFORMED = {
    "torn": b'{"format": 1, "alerts": {',
    "a list": b"[]",
    "null": b"null",
    "not UTF-8": b'{"format": 1, "alerts": {"\xff": 1}}',
    "a bad since": json.dumps({**GOOD_STATE, "alerts": {"disk:/": {**GOOD_ALERT, "since": "yesterday"}}}).encode(),
    "a naive notified": json.dumps({**GOOD_STATE, "alerts": {"disk:/": {**GOOD_ALERT, "notified": "2026-11-24T08:00"}}}).encode(),
    "an alert that is a number": json.dumps({**GOOD_STATE, "alerts": {"disk:/": 3}}).encode(),
    "a bad created": json.dumps({**GOOD_STATE, "outbox": [{"id": "a", "key": "k", "kind": "firing", "channel": "log",
                                 "subject": "s", "text": "t", "ok": False, "created": 5}]}).encode(),
    "a bad bucket time": json.dumps({**GOOD_STATE, "cache": {"bucket": {"at": "soon", "conditions": []}}}).encode(),
    "an old cached condition": json.dumps({**GOOD_STATE, "cache": {"bucket": {"at": T0.isoformat(), "conditions": [
        {"key": "backup", "title": "t", "active": True, "detail": "d", "severity": "high"}]}}}).encode(),
}  # fmt: skip


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_state_file_is_moved_aside_and_the_alerts_fire_again(project: Path, text: bytes) -> None:
    settings = settings_for(project, f"OPS_ALERT_DISK_PATHS={project}\n")
    settings.alerts_state_file.write_bytes(text)
    dry = run_check(settings, rules=("disk",), thresholds=FULL, dry_run=True, now=T0)
    assert "a check without --dry-run resets it" in dry.problems[0]
    assert settings.alerts_state_file.read_bytes() == text and not list(project.glob("alerts.json.corrupt-*"))
    outbox = Outbox()
    report = run_check(settings, rules=("disk",), thresholds=FULL, sources=Sources(send=outbox.send), now=T0)
    assert "could not be read" in report.problems[0] and [n.kind for n in report.notices] == ["firing", "notice"]
    assert ("telegram", "[aistack] NOTICE: the alerts' state was reset") in outbox.sent
    assert len(list(project.glob("alerts.json.corrupt-*"))) == 1
    assert run_check(settings, rules=("disk",), thresholds=FULL, sources=Sources(send=outbox.send), now=T0).problems == []


def test_spend_past_four_dollars_goes_by_email_only(project: Path) -> None:
    settings = settings_for(project)
    spend = Spend("redis", "LiteLLM's budget counters in Redis", {("gpt-4", "openai"): 4.5}, {("", "openai"): 4.5})
    outbox = Outbox()
    report = run_check(settings, rules=("spend",), sources=Sources(send=outbox.send, spend=lambda s: spend), now=T0)
    assert report.firing == ["spend:day-warn"]
    assert outbox.sent == [
        ("log", "[aistack] ALERT: the day's spend above $4.00 (80% of the $5.00 daily budget)"),
        ("email", "[aistack] ALERT: the day's spend above $4.00 (80% of the $5.00 daily budget)"),
    ]
    conditions = {c.key: c for c in report.conditions}
    assert conditions["spend:day-warn"].detail == "$4.50 spent (openai $4.50); from LiteLLM's budget counters in Redis"
    assert conditions["spend:day"].active is False and conditions["spend:month"].active is False


def test_spend_that_cannot_be_read_changes_nothing_and_is_named(project: Path) -> None:
    settings = settings_for(project)

    def unreachable(settings: Settings) -> Spend:
        raise ServiceError("cannot reach Redis at redis://:***@127.0.0.1:6379/0")

    outbox = Outbox()
    report = run_check(settings, rules=("spend",), sources=Sources(send=outbox.send, spend=unreachable), now=T0)
    assert [c.active for c in report.conditions] == [None, None, None, False] and report.ok
    assert report.problems == ["spend: cannot reach Redis at redis://:***@127.0.0.1:6379/0"]
    sources = Sources(send=outbox.send, spend=unreachable)
    assert run_check(settings, rules=("spend",), sources=sources, now=T0 + timedelta(minutes=59)).ok  # a blip
    later = run_check(settings, rules=("spend",), sources=sources, now=T0 + timedelta(minutes=61))
    assert later.firing == ["spend:unreadable"] and "since 2026-11-24 08:00 UTC" in later.conditions[-1].detail
    assert ("email", "[aistack] ALERT: the spend cannot be read") in outbox.sent
    spend = Spend("redis", "LiteLLM's budget counters in Redis", {}, {})
    for minute in (120, 121, 122):  # resolved once readable 3 checks in a row
        back = run_check(settings, rules=("spend",), sources=replace(sources, spend=lambda s: spend),
                         now=T0 + timedelta(minutes=minute))  # fmt: skip
    assert [n.kind for n in back.notices] == ["resolved"] and back.ok


def test_a_bucket_unreadable_for_an_hour_fires_the_backup_alerts(project: Path) -> None:
    settings = settings_for(project, "OPS_BACKUP_BUCKET=aistack-backups\n")

    def unreachable(settings: Settings) -> BackupContext:
        raise ServiceError("cannot reach GCS to list backups/")

    sources = Sources(send=Outbox().send, bucket=unreachable)
    first = run_check(settings, rules=("backup",), sources=sources, now=T0)
    assert first.ok and [c.active for c in first.conditions] == [None, None]  # a blip: unknown
    later = run_check(settings, rules=("backup",), sources=sources, now=T0 + timedelta(minutes=61))
    assert later.firing == ["backup", "drill"]
    assert "the backup bucket cannot be read since 2026-11-24 08:00 UTC" in later.conditions[0].detail


def test_health_from_the_probes_three_failures_fire_and_a_skipped_service_is_left_out(project: Path) -> None:
    from ops.health import HealthReport, ProbeResult

    settings = settings_for(project)
    report = HealthReport(
        (ProbeResult("litellm", False, 3.0, "connection refused"), ProbeResult("observer", True, 0, "off", skipped=True))
    )
    outbox = Outbox()
    for minute in range(3):
        result = run_check(
            settings,
            rules=("health",),
            sources=Sources(send=outbox.send, health=lambda s: report),
            now=T0 + timedelta(minutes=minute),
        )
    assert result.firing == ["health:litellm"] and [c.key for c in result.conditions] == ["health:litellm"]
    assert ("telegram", "[aistack] ALERT: litellm failing its health check") in outbox.sent


def test_ops_alerts_check_dry_run_sends_and_saves_nothing(project: Path) -> None:
    settings = settings_for(project, "OPS_ALERT_DISK_PATHS=relative/path\n")
    ran = run_ops("alerts", "check", "--project-dir", str(project), "--dry-run", "--json", "--rule", "disk")
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["dry_run"] and "disk: OPS_ALERT_DISK_PATHS names 'relative/path': give absolute paths" in report["problems"]
    assert not settings.alerts_state_file.exists()


def test_slice_11_without_the_projects_settings_fails_saying_how_to_run_it() -> None:
    from ops.slices import slice_11
    from ops.slices.base import Target

    checks = slice_11.verify(Target("http://127.0.0.1:9", "sk-x", "http://127.0.0.1:9", "pk", "sk"))
    assert [(c.ok, c.detail) for c in checks] == [
        (False, "no project settings to reach the notifiers: run it as `make slice-11`")
    ]


def test_memory_above_the_line_for_five_minutes_names_the_largest_containers(project: Path) -> None:
    settings = settings_for(project)
    meminfo = project / "meminfo"
    asked: list[str] = []

    def largest(settings: Settings) -> str:
        asked.append("docker")
        return "litellm 1210 MB, n8n 905 MB, postgres 240 MB"

    outbox = Outbox()
    for minute, available_kb in enumerate([3_000_000, 300_000, 300_000, 300_000, 300_000, 300_000, 300_000]):
        meminfo.write_text(f"MemTotal:        4000000 kB\nMemFree:          100000 kB\nMemAvailable:    {available_kb} kB\n")
        sources = Sources(send=outbox.send, meminfo=meminfo, containers=largest)
        report = run_check(settings, rules=("memory",), sources=sources, now=T0 + timedelta(minutes=minute))
    assert len(asked) == 6  # only while above 90%, never at 25%
    assert report.firing == ["memory"] and [s for c, s in outbox.sent if c == "email"] == [
        "[aistack] ALERT: memory above 90% for 5 minutes"
    ]
    assert report.conditions[0].detail == (
        "92% of the VM's memory in use, above 90% for 5 min; largest containers: litellm 1210 MB, n8n 905 MB, postgres 240 MB"
    )


def test_the_quiet_output_cron_logs_every_minute_names_a_problem_once(project: Path) -> None:
    settings = settings_for(project)

    def unreachable(settings: Settings) -> Spend:
        raise ServiceError("cannot reach Redis")

    sources = Sources(send=Outbox().send, spend=unreachable)
    lines = [
        run_check(settings, rules=("spend",), sources=sources, now=T0 + timedelta(minutes=m)).lines(quiet=True) for m in range(3)
    ]
    assert lines == [["problem  spend: cannot reach Redis"], [], []]
    assert "problem  spend: cannot reach Redis" in run_check(settings, rules=("spend",), sources=sources, now=T0).lines()
