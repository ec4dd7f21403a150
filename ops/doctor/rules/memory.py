"""Every service has a memory limit, and the limits of the enabled profiles fit the VM."""

from __future__ import annotations

from ops.doctor import DoctorContext, Finding
from ops.errors import ConfigError
from ops.memory import MemoryReport, memory_report

NAME = "memory"
DESCRIPTION = "the sum of memory limits per enabled profile fits the VM less the OS and Docker"


def fixes(report: MemoryReport) -> list[str]:
    """Given a report over its budget, return the ways to make the enabled profiles fit, the cheapest first."""
    over = report.total_mb - report.budget_mb
    found = []
    if "langfuse" in report.enabled_profiles:
        found.append(
            "send traces to Langfuse Cloud instead (drop langfuse from COMPOSE_PROFILES, set LANGFUSE_HOST to "
            "https://cloud.langfuse.com and the cloud project's keys)"
        )
    found.append(f"a VM with at least {report.vm_mb + over} MB (VM_MEMORY_MB; an e2-standard-2 has 8192)")
    found.append(f"SWAP_ALLOWANCE_MB={report.swap_mb + over} after measuring the stack under load (docs/ARCHITECTURE.md)")
    return found


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
    if report.swap_mb > report.vm_mb:
        message = f"SWAP_ALLOWANCE_MB {report.swap_mb} is more than the VM's {report.vm_mb} MB: the stack would live in swap"
        findings.append(Finding(NAME, "error", message))
    elif report.swap_mb:
        findings.append(
            Finding(
                NAME,
                "warning",
                f"the budget counts {report.swap_mb} MB of swap (SWAP_ALLOWANCE_MB): keep a swap file at least that big "
                "(swapon --show) and measure the stack again under load (docker stats) after every change",
            )
        )
    if report.total_mb > report.budget_mb:
        swap = f" plus {report.swap_mb} MB of swap" if report.swap_mb else ""
        findings.append(
            Finding(
                NAME,
                "error",
                f"profile {label}: limits total {report.total_mb} MB, over the budget of {report.budget_mb} MB "
                f"({report.vm_mb} MB VM less {report.reserved_mb} MB for the OS and Docker{swap}); fix: "
                + "; or ".join(fixes(report)),
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
