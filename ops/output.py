"""Text rendering of result objects for the CLI (the library returns data; this formats it)."""

from __future__ import annotations

from typing import Any

from ops.bench.gateway import GatewayBench
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


def gateway_bench_text(bench: GatewayBench) -> str:
    streamed = ", every request streamed" if bench.stream else ""
    lines = [f"upstream latency {bench.upstream_latency_ms} ms, {bench.requests} requests per run{streamed}", ""]
    lines.append(f"{'target':<17}{'conc':>5}{'req/s':>9}{'p50':>8}{'p95':>8}{'p99':>8}{'errors':>8}{'peak MB':>9}{'CPU ms':>8}")
    for run in bench.runs:
        r = run.result
        peak = f"{run.peak_mb:.0f}" if run.peak_mb is not None else "-"
        cpu = f"{run.cpu_ms:.1f}" if run.cpu_ms is not None else "-"
        lines.append(
            f"{run.target:<17}{run.concurrency:>5}{r.throughput:>9.1f}{r.percentile(50):>8.1f}"
            f"{r.percentile(95):>8.1f}{r.percentile(99):>8.1f}{r.errors:>8}{peak:>9}{cpu:>8}"
        )
    lines.append("")
    for c in bench.comparisons():
        verdicts = [k.removeprefix("meets_").removesuffix("_target") for k, v in c.items() if k.startswith("meets_") and not v]
        lines.append(
            f"{c['target']} at {c['concurrency']}: {c['throughput_ratio']:.2f}x direct throughput, "
            f"+{c['added_p50_ms']:.0f} ms p50"
            + (f", {c['cpu_ratio_to_minimal']:.2f}x the minimal's CPU/request" if c.get("cpu_ratio_to_minimal") else "")
            + "; "
            + ("all targets met" if not verdicts else "misses: " + ", ".join(verdicts))
        )
    if bench.paired:
        lines += [
            "",
            f"side by side, every configuration under the same load at once ({bench.paired[0].result.requests} requests each):",
        ]
        for paired in bench.paired:
            row = paired.to_dict(bench.paired_minimal_cpu_ms)
            ratio = f" ({row['cpu_ratio_to_minimal']:.2f}x the minimal's)" if row["cpu_ratio_to_minimal"] else ""
            lines.append(f"  {paired.target:<24}{paired.cpu_ms:>7.2f} ms CPU/request{ratio}, {paired.result.errors} errors")
    return "\n".join(lines)


def slice_result_text(data: dict[str, Any]) -> str:
    """Render a slice plan, apply, verify or rollback result (its to_dict()) as lines."""
    lines = [f"slice {data.get('slice')}: {data.get('title', data.get('outcome', ''))}"]
    for key in ("requires", "services", "files", "databases", "compose_actions", "changed", "steps"):
        if data.get(key):
            lines.append(f"  {key}: {', '.join(map(str, data[key]))}")
    if "running" in data:
        lines.append("  running now: " + (", ".join(f"{s}={'yes' if r else 'no'}" for s, r in data["running"].items()) or "-"))
    for check in data.get("checks", []):
        lines.append(f"  {'PASS' if check['ok'] else 'FAIL'}  {check['name']}: {check['detail']}")
    if data.get("error"):
        lines.append(f"  FAILED  {data['error']}")
    if data.get("outcome"):
        lines.append(f"  outcome: {data['outcome']}" + (f" (snapshot {data['snapshot']})" if data.get("snapshot") else ""))
    if data.get("rollback"):
        rollback = data["rollback"]
        lines.append("  rolled back: " + "; ".join(rollback["steps"]))
        lines.append(f"  what it replaced is saved in {rollback['saved_to']} (kept {rollback.get('saved_for_days', '?')} days)")
    if data.get("saved_to"):
        kept = f" (kept {data['saved_for_days']} days)" if data.get("saved_for_days") else ""
        lines.append(f"  current state saved to {data['saved_to']}{kept}")
    for note in data.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def status_text(rows: list[dict[str, Any]]) -> str:
    """Render `ops status` rows (SliceStatus.to_dict()): one line a slice, and the next step under one that needs it."""
    lines = []
    for row in rows:
        lines.append(f"{row['number']:>2}  {row['title']:<46} {row['state']:<24} {row['at']}".rstrip())
        if row.get("hint"):
            lines.append(f"    {row['hint']}")
            if row.get("detail"):
                lines.append(f"    {row['detail'][:300]}")
    return "\n".join(lines)
