"""Every long-running service has a healthcheck, a restart policy and log rotation."""

from __future__ import annotations

from ops.doctor import DoctorContext, Finding

NAME = "healthchecks"
DESCRIPTION = "every long-running service has a healthcheck, a restart policy and rotated logs"


def check(ctx: DoctorContext) -> list[Finding]:
    if ctx.stack is None:
        return []
    findings = []
    for service in ctx.stack.services:
        if "restart" not in service.spec:
            findings.append(Finding(NAME, "error", f"service {service.name!r} has no restart policy"))
        if not service.one_shot and service.healthcheck is None:
            findings.append(Finding(NAME, "error", f"service {service.name!r} has no healthcheck"))
        options = (service.spec.get("logging") or {}).get("options") or {}
        if "max-size" not in options:
            findings.append(Finding(NAME, "error", f"service {service.name!r} has no log rotation (logging.options.max-size)"))
    return findings
