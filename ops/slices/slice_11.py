"""Slice 11: monitoring alerts: memory, disk, a service down, spend; e-mail and Telegram; fired and resolved.

Apply installs alerts/crontab as /etc/cron.d/aistack-alerts (OPS_ALERTS_CRON_FILE), the way slice 10
installs the backup jobs: `ops alerts check` every minute. Verify checks the installed job and runs it
as cron runs it; sends a test notice through each notifier that is configured (e-mail, Telegram: either is
optional, none fails); then fires each alert on purpose on the running stack and sees it delivered and
resolved through the real check, state machine and outbox (ops.alerts.drills: a memory hog in a container, a
full scratch filesystem, qdrant stopped, spend counters past $4, $10 and $40), each in a state file of its own
so the cron job's alerts are untouched. A notice counts as delivered when the SMTP relay accepted it
(STARTTLS) and the Bot API answered with the message. The alerts Cloud Monitoring raises when the VM
itself is down are `ops alerts gcp` (docs/ALERTS.md).
"""

from __future__ import annotations

import time
from pathlib import Path

from ops.config import Settings
from ops.errors import OpsError
from ops.slices.base import Check, Target
from ops.slices.cron import CronFile

NUMBER = 11
TITLE = "Monitoring alerts"
REQUIRES: tuple[int, ...] = ()
SERVICES: tuple[str, ...] = ()
FILES: tuple[str, ...] = ("alerts/crontab",)
DATABASES: tuple[str, ...] = ()
CHECK_JOB = "alerts check"
CRON = CronFile(
    Path("alerts/crontab"),
    "/etc/cron.d/aistack-alerts",
    "OPS_ALERTS_CRON_FILE",
    rendered=("OPS_ALERTS_STATE", "OPS_ALERTS_LOG"),
    log_variable="OPS_ALERTS_LOG",
)
PLAN_NOTIFIERS = ("email", "telegram")  # the plan's "Email + Telegram"; either is optional, not both
SETUP = {
    "email": "set OPS_SMTP_HOST, OPS_SMTP_FROM, OPS_SMTP_TO (and OPS_SMTP_USER, OPS_SMTP_PASSWORD) in vps.env",
    "telegram": "set OPS_TELEGRAM_BOT_TOKEN and OPS_ALERT_TELEGRAM_CHAT (or OPS_TELEGRAM_CHAT_IDS) in vps.env",
}

BUSY = "another `ops alerts check` is running"
BUSY_WAIT = 20.0  # seconds to wait for the cron job's own check to finish


def install(settings: Settings) -> list[str]:
    """Install (or, if alerts/crontab is gone, remove) the alerts' cron file; return what changed."""
    return CRON.install(settings)


def _job_checks(settings: Settings) -> list[Check]:
    installed, detail = CRON.installed(settings)
    checks = [Check("job installed", installed, detail)]
    text = CRON.target(settings).read_text() if installed else CRON.render(settings)
    deadline = time.monotonic() + BUSY_WAIT
    status, output = CRON.run_job(text, CHECK_JOB)
    while status > 1 and BUSY in output and time.monotonic() < deadline:  # the minute's own check holds the lock
        time.sleep(1)
        status, output = CRON.run_job(text, CHECK_JOB)
    checks.append(job_check(status, output))
    return checks


def job_check(status: int, output: str) -> Check:
    """Given the cron job's exit status and output, return whether the check ran: 0, or 1 (an alert is firing, it was
    notified); 2 (setup), 3 (the check crashed) or any traceback in its output is a failure."""
    crashed = "Traceback (most recent call last)" in output
    ok = status in (0, 1) and not crashed
    detail = f"exit {status}" + (" (an alert is firing)" if status == 1 and ok else "") + ("" if ok else f": {output[-600:]}")
    return Check("the check runs as cron runs it", ok, detail)


def notifier_checks(settings: Settings) -> list[Check]:
    """The notifiers: those configured (fail if none is, or one is malformed), then a test notice by each of them."""
    from ops.alerts.check import OFF, notifiers
    from ops.notify import Notice, send

    problems: list[str] = []
    off: dict[str, str] = {}
    config = notifiers(settings, problems, off)
    configured = [n for n in PLAN_NOTIFIERS if n in config.configured()]
    broken = [f"{OFF[name]}: {off[name]}" for name in PLAN_NOTIFIERS if name in off]
    unset = [
        f"{name} is not configured: {SETUP[name]}" + (" (spend alerts go by e-mail only)" if name == "email" else " (optional)")
        for name in PLAN_NOTIFIERS
        if name not in configured
    ]
    if not configured and not broken:
        unset = [f"no notifier is configured: {' or '.join(SETUP.values())} (spend alerts go by e-mail only)"]
    said = [f"{', '.join(configured)} configured" if configured else "", *broken, *unset]
    checks = [Check("notifiers", bool(configured) and not broken, "; ".join(s for s in said if s))]
    notice = Notice("alert", True, "A test notice from `ops slice 11`: alerts reach you here.", "[aistack] test alert")
    for name in configured:
        try:
            send(name, config, notice)
            checks.append(Check(f"test notice by {name}", True, _where(name, settings)))
        except Exception as exc:
            checks.append(Check(f"test notice by {name}", False, str(exc)))
    return checks


def _where(name: str, settings: Settings) -> str:
    if name == "email" and settings.smtp:
        return f"accepted by {settings.smtp.host}:{settings.smtp.port} (STARTTLS) for {', '.join(settings.smtp.recipients)}"
    if name == "telegram" and settings.alert_telegram:
        return f"sent to chat {settings.alert_telegram.chat_id}"
    return "sent"


def setup_checks(settings: Settings) -> list[Check]:
    """Given Settings, return the checks of the installed job (run as cron runs it) and of the notifiers."""
    return _job_checks(settings) + notifier_checks(settings)


def verify(target: Target) -> list[Check]:
    if target.settings is None:
        return [Check("alerts", False, "no project settings to reach the notifiers: run it as `make slice-11`")]
    from ops.alerts.drills import run_drills

    settings = target.settings
    try:
        return setup_checks(settings) + run_drills(settings)
    except OpsError as exc:
        return [Check("alerts", False, str(exc))]
