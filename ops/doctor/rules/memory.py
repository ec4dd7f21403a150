"""Every service has a memory limit, and the limits of the enabled profiles fit the VM."""

from __future__ import annotations

from ops.doctor import DoctorContext, Finding
from ops.errors import ConfigError
from ops.memory import memory_report

NAME = "memory"
DESCRIPTION = "the sum of memory limits per enabled profile fits the VM less the OS and Docker"


def check(ctx: DoctorContext) -> list[Finding]:
    if ctx.stack is None:
        return []
    try:
        report = memory_report(ctx.stack, ctx.settings)
    except ConfigError as exc:
        return [Finding(NAME, "error", str(exc))]
    findings = [Finding(NAME, "error", f"service {r.service!r} has no memory limit") for r in report.rows if r.limit_mb is None]
    if report.budget_mb <= 0:
        findings.append(
            Finding(NAME, "error", f"the reserves ({report.reserved_mb} MB) leave nothing of the VM's {report.vm_mb} MB")
        )
    label = "core" + "".join(f"+{p}" for p in report.enabled_profiles)
    if report.total_mb > report.budget_mb:
        findings.append(
            Finding(
                NAME,
                "error",
                f"profile {label}: limits total {report.total_mb} MB, over the budget of {report.budget_mb} MB "
                f"({report.vm_mb} MB VM less {report.reserved_mb} MB for the OS and Docker)",
            )
        )
    for total in report.totals:
        if total.total_mb > report.budget_mb and total.profiles != report.enabled_profiles:
            findings.append(
                Finding(
                    NAME,
                    "warning",
                    f"profile {total.label} would need {total.total_mb} MB, over the {report.budget_mb} MB budget",
                )
            )
    return findings
