"""What each alert rule looks at, read into Conditions (ops.alerts.state turns them into notices).

- memory: /proc/meminfo, the share of MemTotal not MemAvailable (the kernel's own estimate of what can be
  had without swapping); sampled every check, the state keeps the window (above 90% for 5 minutes).
- disk: statvfs of each watched directory's filesystem, counted as df does (used of used + available to
  users): the project's and Docker's data root by default (OPS_ALERT_DISK_PATHS); above 85%.
- health: ops.health.run_health (every service by its own protocol); 3 failed checks in a row. Its probe
  of the observer (the heartbeat key in Redis) is the heartbeat rule, 2 in a row.
- spend: ops.cost.read_spend, the figures `ops cost` shows (LiteLLM's spend logs when its database is
  on, its budget counters in Redis when not); the day above 80% of the daily budget ($4) and above $10,
  the month above $40 (the stop is $55). By e-mail only, as the plan says.
- backup and drill: the bucket's listing: the newest complete backup holding Postgres older than
  26 hours; the newest passed restore drill (its record, ops.backup.drill) older than 8 days. Read at
  most every BUCKET_EVERY (15 minutes), not every minute.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ops.alerts.state import Condition, Thresholds
from ops.backup.manifest import MANIFEST, RUN_ID, Manifest, run_time
from ops.errors import OpsError

if TYPE_CHECKING:
    from ops.backup.context import BackupContext
    from ops.config import Settings
    from ops.cost import Budgets, Spend

RULES = ("memory", "disk", "health", "spend", "backup")  # "backup" covers the drill too: one listing of the bucket
BUCKET_EVERY = timedelta(minutes=15)
EMAIL_ONLY = ("email",)


def meminfo_kb(meminfo: Path = Path("/proc/meminfo")) -> tuple[int, int]:
    """Given /proc/meminfo, return (MemTotal, MemAvailable) in kB. Raise OpsError if unreadable."""
    values: dict[str, int] = {}
    try:
        for line in meminfo.read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("MemTotal", "MemAvailable"):
                values[name] = int(rest.split()[0])
    except (OSError, ValueError, IndexError) as exc:
        raise OpsError(f"cannot read the memory use from {meminfo}: {exc}") from exc
    if not values.get("MemTotal") or "MemAvailable" not in values:
        raise OpsError(f"{meminfo} has no MemTotal and MemAvailable lines")
    return values["MemTotal"], values["MemAvailable"]


def memory_percent(meminfo: Path = Path("/proc/meminfo")) -> float:
    """Given /proc/meminfo, return the percentage of memory in use (not available). Raise OpsError if unreadable."""
    total, available = meminfo_kb(meminfo)
    return 100.0 * (1 - available / total)


def largest_containers(settings: Settings, count: int = 3) -> str:
    """Given Settings, return the compose project's largest containers by memory, as `docker stats` counts it
    ("litellm 812 MB, n8n 640 MB, ..."). Raise OpsError if the Docker engine cannot be asked."""
    from docker.errors import DockerException

    from ops.loadtest.watch import _docker_memory_mb
    from ops.runtime.compose import Compose
    from ops.runtime.docker import client

    compose = Compose.for_settings(settings)
    project = compose.project_name or settings.project_dir.name  # compose's default name: the directory's
    try:
        found = []
        label = f"com.docker.compose.project={project}"
        for container in client(compose.docker_host).containers.list(filters={"label": label}):
            service = container.labels.get("com.docker.compose.service", container.name)
            found.append((_docker_memory_mb(container.stats(stream=False, one_shot=True)), service))
    except DockerException as exc:
        raise OpsError(f"cannot read the containers' memory from Docker: {exc}") from exc
    return ", ".join(f"{service} {mb:.0f} MB" for mb, service in sorted(found, reverse=True)[:count])


def disk_conditions(paths: tuple[Path, ...], limits: Thresholds) -> list[Condition]:
    """Given the watched directories, return one condition per filesystem (a missing directory is left out)."""
    conditions, devices = [], set()
    for path in paths:
        try:
            device = os.stat(path).st_dev
            stats = os.statvfs(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            conditions.append(Condition(f"disk:{path}", f"disk {path} full", None, f"cannot read {path}: {exc.strerror}"))
            continue
        if device in devices:
            continue
        devices.add(device)
        used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
        available = stats.f_bavail * stats.f_frsize
        percent = 100.0 * used / (used + available) if used + available else 0.0
        gb = 1024**3
        detail = (
            f"{path}: {percent:.0f}% used ({used / gb:.1f} of {(used + available) / gb:.1f} GB), {available / gb:.1f} GB free"
        )
        title = f"disk {path} above {limits.disk_percent:.0f}%"
        conditions.append(Condition(f"disk:{path}", title, percent > limits.disk_percent, detail))
    return conditions


def spend_conditions(spend: Spend | None, budgets: Budgets, limits: Thresholds, problem: str = "") -> list[Condition]:
    """Given the spend (None: it could not be read, problem says why) and the budgets, return the three spend
    conditions, e-mail only."""
    warn = limits.day_warn_usd if limits.day_warn_usd is not None else budgets.day_warn
    rules = [
        ("spend:day-warn", "day", warn, f"the day's spend above ${warn:.2f} (80% of the ${budgets.daily:.2f} daily budget)"),
        ("spend:day", "day", limits.day_usd, f"the day's spend above ${limits.day_usd:.2f}"),
        ("spend:month", "month", limits.month_usd, f"the month's spend above ${limits.month_usd:.2f} (the stop is "
                                                   f"${budgets.monthly:.2f})"),
    ]  # fmt: skip
    conditions = []
    for key, period, limit, title in rules:
        if spend is None:
            conditions.append(Condition(key, title, None, f"the spend could not be read: {problem}", EMAIL_ONLY))
            continue
        total = spend.day_total if period == "day" else spend.month_total
        top = ", ".join(f"{name} ${usd:.2f}" for name, usd in list(spend.by(period, "provider").items())[:4])
        detail = f"${total:.2f} spent ({top or 'nothing'}); from {spend.note}"
        conditions.append(Condition(key, title, total > limit, detail, EMAIL_ONLY))
    return conditions


def bucket_conditions(ctx: BackupContext, now: datetime, limits: Thresholds) -> list[Condition]:
    """Given the backup context, return the backup and drill conditions from one listing of the bucket (and the
    manifests of the newest runs, until a complete one holding Postgres). Raise OpsError if the bucket cannot be read."""
    from ops.backup.drill import newest_passed

    objects = [o.name for o in ctx.bucket.list(ctx.run_prefix())]
    prefix = ctx.run_prefix()
    run_ids = {name[len(prefix) :].split("/", 1)[0] for name in objects}
    names = set(objects)
    newest: Manifest | None = None
    for run_id in sorted((r for r in run_ids if RUN_ID.match(r)), key=run_time, reverse=True):
        manifest_name = ctx.object_name(run_id, MANIFEST)
        if manifest_name not in names:
            continue  # incomplete: no manifest
        try:
            manifest = Manifest.from_json(ctx.bucket.read_text(manifest_name), manifest_name)
        except (OpsError, UnicodeDecodeError):
            continue  # unreadable: `ops backup list` names it
        if manifest.status == "complete" and "postgres" in manifest.held():
            newest = manifest
            break
    where = f"gs://{ctx.bucket.name}/{prefix}"
    hours = limits.backup_hours
    backup_title = f"no good backup for {hours:.0f} hours"
    if newest is None:
        backup = Condition("backup", backup_title, True, f"no complete backup holding Postgres in {where}")
    else:
        age = now - newest.created
        backup = Condition("backup", backup_title, age > timedelta(hours=hours),
                           f"the newest good backup is {newest.run_id}, {age.total_seconds() / 3600:.1f} h old")  # fmt: skip
    days = limits.drill_days
    drill_title = f"no passed restore drill for {days:.0f} days"
    passed = newest_passed(objects)
    if passed is None:
        drill = Condition("drill", drill_title, True, f"no passed restore drill recorded in {where}drills/")
    else:
        at, run_id = passed
        age = now - at
        drill = Condition("drill", drill_title, age > timedelta(days=days),
                          f"the newest passed drill restored {run_id} on {at:%Y-%m-%d %H:%M} UTC, "
                          f"{age.total_seconds() / 86400:.1f} days ago")  # fmt: skip
    return [backup, drill]


def unknown_bucket(problem: str, limits: Thresholds, failing_since: datetime | None, now: datetime) -> list[Condition]:
    """Given why the bucket could not be read and since when, return the backup and drill conditions: unknown for an
    hour (a blip), then firing (backups cannot be checked, so they cannot be trusted)."""
    long = failing_since is not None and now - failing_since > timedelta(hours=1)
    since = f" since {failing_since.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if long and failing_since else ""
    detail = f"the backup bucket cannot be read{since}: {problem}"
    return [
        Condition("backup", f"no good backup for {limits.backup_hours:.0f} hours", True if long else None, detail),
        Condition("drill", f"no passed restore drill for {limits.drill_days:.0f} days", True if long else None, detail),
    ]
