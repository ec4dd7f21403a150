"""Text rendering of result objects for the CLI (the library returns data; this formats it)."""

from __future__ import annotations

from ops.doctor import DoctorReport


def doctor_text(report: DoctorReport) -> str:
    lines = []
    if report.memory:
        m = report.memory
        lines.append(f"Memory budget: {m.vm_mb} MB VM - {m.reserved_mb} MB OS and Docker = {m.budget_mb} MB for containers")
        lines.append(f"  {'service':<18}{'limit MB':>9}  profile")
        for row in m.rows:
            limit = "-" if row.limit_mb is None else str(row.limit_mb)
            note = ",".join(row.profiles) or "core"
            lines.append(f"  {row.service:<18}{limit:>9}  {note}{' (one-shot)' if row.one_shot else ''}")
        for total in m.totals:
            mark = "<- enabled" if total.profiles == m.enabled_profiles else ""
            verdict = "fits" if total.total_mb <= m.budget_mb else "OVER"
            lines.append(f"  {'total ' + total.label:<18}{total.total_mb:>9}  {verdict} {mark}".rstrip())
        lines.append("")
    for finding in report.findings:
        lines.append(f"{finding.severity.upper():<8}{finding.rule}: {finding.message}")
    errors = sum(f.severity == "error" for f in report.findings)
    warnings = len(report.findings) - errors
    lines.append(f"{'OK' if report.ok else 'FAILED'}: {len(report.rules)} rules, {errors} errors, {warnings} warnings")
    return "\n".join(lines)
