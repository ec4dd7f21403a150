"""ops alerts check, issue 12 item 2's review: a slow bucket, a rule that crashes, a crash of the check itself, a state
the user cannot read, a bucket no longer set, a notice refused for good. Notifiers and the stack's sources replaced
as in test_alerts_check.py (the notifiers themselves are tested against aiosmtpd and the Bot API fake)."""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from ops.alerts import check as check_module
from ops.alerts.check import Sources, run_check
from ops.backup.context import BackupContext
from ops.config import Settings
from ops.errors import ServiceError
from ops.notify import Notice, NotifyConfig, PermanentNotifyError
from ops.slices.slice_11 import job_check
from tests.unit.cli import run_ops
from tests.unit.test_alerts_check import FULL, T0, Outbox, settings_for


def test_a_hung_bucket_costs_its_deadline_and_the_other_rules_still_go_out(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(check_module, "BUCKET_DEADLINE", 0.2)
    settings = settings_for(project, f"OPS_ALERT_DISK_PATHS={project}\nOPS_BACKUP_BUCKET=aistack-backups\n")
    released = threading.Event()

    def hung(settings: Settings) -> BackupContext:
        released.wait(10)
        raise ServiceError("answered at last")

    outbox = Outbox()
    try:
        report = run_check(settings, rules=("disk", "backup"), thresholds=FULL, now=T0,
                           sources=Sources(send=outbox.send, bucket=hung))  # fmt: skip
    finally:
        released.set()
    assert "backups: the backup bucket did not answer within 0.2 s" in report.problems
    assert report.firing == [f"disk:{project}"] and ("telegram", f"[aistack] ALERT: disk {project} above 0%") in outbox.sent


def test_a_check_killed_while_reading_the_bucket_is_not_repeated_every_minute_and_fires_after_an_hour(
    project: Path,
) -> None:
    settings = settings_for(project, "OPS_BACKUP_BUCKET=aistack-backups\n")
    reads: list[int] = []

    def killed(settings: Settings) -> BackupContext:
        reads.append(1)
        raise KeyboardInterrupt  # stands for cron's `timeout` killing the check mid-read: nothing after it runs

    outbox = Outbox()
    sources = Sources(send=outbox.send, bucket=killed)
    for minute in range(61):
        with contextlib.suppress(KeyboardInterrupt):
            run_check(settings, rules=("backup",), sources=sources, now=T0 + timedelta(minutes=minute))
    assert len(reads) == 5  # minutes 0, 15, 30, 45, 60
    report = run_check(settings, rules=("backup",), sources=sources, now=T0 + timedelta(minutes=61))
    assert report.firing == ["backup", "drill"] and len(reads) == 5
    assert "did not finish (the check was stopped)" in report.conditions[0].detail
    assert ("email", "[aistack] ALERT: no good backup for 26 hours") in outbox.sent


def test_a_rule_that_crashes_is_named_and_the_others_still_alert(project: Path) -> None:
    settings = settings_for(project, f"OPS_ALERT_DISK_PATHS={project}\n")

    def no_thread(settings: Settings) -> object:
        raise RuntimeError("can't start new thread")

    outbox = Outbox()
    report = run_check(settings, rules=("disk", "health"), thresholds=FULL, now=T0,
                       sources=Sources(send=outbox.send, health=no_thread))  # type: ignore[arg-type]  # fmt: skip
    assert report.problems == ["health: the rule failed (RuntimeError: can't start new thread)"]
    assert ("email", f"[aistack] ALERT: disk {project} above 0%") in outbox.sent


def test_a_crash_of_the_check_is_exit_3_in_one_line_and_slice_11_rejects_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_for(project)

    def crash(*args: object, **kwargs: object) -> None:
        raise AttributeError("'list' object has no attribute 'get'")

    monkeypatch.setattr(check_module, "run_check", crash)
    ran = run_ops("alerts", "check", "--project-dir", str(project), "--quiet")
    assert ran.returncode == 3
    assert ran.stderr == "error: the alerts check failed unexpectedly (AttributeError: 'list' object has no attribute 'get')\n"
    assert not job_check(3, ran.stderr).ok
    assert not job_check(1, 'Traceback (most recent call last):\n  File "x"\nValueError: bad\n').ok
    assert job_check(1, "").ok and job_check(0, "").ok


def test_a_dry_run_that_cannot_read_the_state_says_so_in_one_line(project: Path) -> None:
    state = project / ("x" * 300) / "alerts.json"  # the path alone fails (as /var/lib/aistack does for a non-root user)
    settings_for(project, f"OPS_ALERTS_STATE={state}\n")
    ran = run_ops("alerts", "check", "--project-dir", str(project), "--dry-run", "--rule", "disk")
    assert ran.returncode == 2 and ran.stderr.startswith(f"error: cannot read the alerts' state {state}: File name too long")


def test_a_backup_alert_is_resolved_once_the_bucket_is_no_longer_set(project: Path) -> None:
    settings = settings_for(project, "OPS_BACKUP_BUCKET=aistack-backups\n")

    def unreachable(settings: Settings) -> BackupContext:
        raise ServiceError("cannot reach GCS")

    outbox = Outbox()
    sources = Sources(send=outbox.send, bucket=unreachable)
    run_check(settings, rules=("backup",), sources=sources, now=T0)
    assert run_check(settings, rules=("backup",), sources=sources, now=T0 + timedelta(minutes=61)).firing == ["backup", "drill"]
    report = run_check(settings_for(project), rules=("backup",), sources=sources, now=T0 + timedelta(minutes=62))
    assert report.ok and [(n.kind, n.key) for n in report.notices] == [("resolved", "backup"), ("resolved", "drill")]


def test_a_notice_the_relay_refuses_for_good_is_dropped_and_said_on_telegram(project: Path) -> None:
    settings = settings_for(project, f"OPS_ALERT_DISK_PATHS={project}\n")
    sent: list[tuple[str, str]] = []

    def send(channel: str, config: NotifyConfig, notice: Notice) -> None:
        if channel == "email":
            raise PermanentNotifyError("the relay refused the message for good: 554 5.7.1 rejected")
        sent.append((channel, notice.subject))

    first = run_check(settings, rules=("disk",), thresholds=FULL, sources=Sources(send=send), now=T0)
    assert first.failed == [] and "refused for good" in first.dropped[0]
    assert "email refused a notice for good: the relay refused the message for good: 554 5.7.1 rejected" in first.problems
    state = json.loads(settings.alerts_state_file.read_text())
    assert {o["channel"] for o in state["outbox"] if o["kind"] != "notice"} == set()  # not retried for a day
    run_check(settings, rules=("disk",), thresholds=FULL, sources=Sources(send=send), now=T0 + timedelta(minutes=1))
    assert ("telegram", "[aistack] NOTICE: email refused a notice") in sent


def test_the_spend_query_is_bounded_as_ops_healths_postgres_probe_is(project: Path) -> None:
    from ops.cost import spend_psql

    settings = settings_for(project, "OPS_POSTGRES_URL=postgresql://postgres:pw@127.0.0.1:5432/postgres\n")
    psql = spend_psql(settings)  # on the VM the same code adds `timeout -s KILL 10` inside the container
    assert psql.timeout == 10.0 and ("PGCONNECT_TIMEOUT", "10") in psql.env  # psql's default: 120 s, no connect limit
    assert "litellm" in " ".join(psql.argv)
