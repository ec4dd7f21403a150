"""`ops cost`: the gateway's spend today and this month, by model group and provider, against the budgets.

The spend comes from LiteLLM's own records, never from an estimate of ours:

- LiteLLM's database on (OPS_COMPOSE_OVERRIDES names docker-compose.litellm-db.yml): its spend logs,
  table "LiteLLM_SpendLogs" (one row per request: spend in USD, "startTime", model_group,
  custom_llm_provider; source: LiteLLM 1.100.5 litellm/proxy/schema.prisma), summed for the calendar
  day and month in UTC.
- Off (the default): the budget limiter's counters in Redis, which LiteLLM keeps with no database
  (source: LiteLLM 1.100.5 litellm/router_strategy/budget_limiter.py, RouterBudgetLimiting):
  ``deployment_spend:<model id>:1d`` (USD in the deployment's current 1-day window, which opened at
  ``deployment_budget_start_time:<model id>``, a Unix time) and ``provider_spend:<provider>:30d``
  (the provider's 30-day window, opened at ``provider_budget_start_time:<provider>``). These are
  windows, not calendar days: each opens at the first spend after the last one closed. The model ids
  are LiteLLM's deployment ids, named by the gateway's /model/info (model_info.id); the 30-day counters
  are per provider only, so the month has no split by model group.

``ops alerts check`` reads the same figures (its spend rules), so the alert and this report agree.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import redis

from ops.config import Settings
from ops.errors import ConfigError, OpsError, ServiceError
from ops.gateway.litellm_config import deployments, load_config

if TYPE_CHECKING:
    from ops.journal import Psql

DAY_ALERT_USD = 10.0  # the plan's slice 11: "Daily spend > $10", by e-mail
MONTH_ALERT_USD = 40.0  # the plan's budget controls: "Alert when >$40 spent" (the stop is $55)
DAY_WARN_SHARE = 0.8  # of the daily budget: the routing notes' "Daily budget: $5.00, Alert at: $4.00"
SPEND_LOGS = '"LiteLLM_SpendLogs"'
UNKNOWN = "?"


@dataclass(frozen=True)
class Budgets:
    """What litellm-config.yaml allows, and where the alerts are."""

    daily: float  # the deployments' max_budget per 1d, summed ($5)
    daily_by_group: dict[str, float]
    monthly: float  # litellm_settings.max_budget ($55): the hard stop
    monthly_by_provider: dict[str, float]  # router_settings.provider_budget_config, 30d
    provider_of_group: dict[str, str]
    day_alert: float = DAY_ALERT_USD
    month_alert: float = MONTH_ALERT_USD

    @property
    def day_warn(self) -> float:
        return round(self.daily * DAY_WARN_SHARE, 2)

    def to_dict(self) -> dict[str, Any]:
        return {
            "daily": self.daily,
            "daily_by_group": self.daily_by_group,
            "monthly": self.monthly,
            "monthly_by_provider": self.monthly_by_provider,
            "alerts": {"day_warn": self.day_warn, "day": self.day_alert, "month": self.month_alert},
        }


def budgets(settings: Settings) -> Budgets:
    """Given Settings, return the budgets of litellm-config.yaml. Raise ConfigError if it is malformed or states no
    daily budget."""
    data = load_config(settings.litellm_config)
    daily_by_group: dict[str, float] = defaultdict(float)
    provider_of_group: dict[str, str] = {}
    for d in deployments(data):
        provider_of_group.setdefault(d.group, d.provider or UNKNOWN)
        if d.params.get("budget_duration") == "1d" and isinstance(d.params.get("max_budget"), int | float):
            daily_by_group[d.group] += float(d.params["max_budget"])
    if sum(daily_by_group.values()) <= 0:
        raise ConfigError(f"{settings.litellm_config.name} states no daily budget (max_budget with budget_duration: 1d)")
    settings_ = data.get("litellm_settings") or {}
    providers = (data.get("router_settings") or {}).get("provider_budget_config") or {}
    monthly_by_provider = {
        str(name): float(conf["budget_limit"])
        for name, conf in providers.items()
        if isinstance(conf, dict) and conf.get("time_period") == "30d" and isinstance(conf.get("budget_limit"), int | float)
    }
    monthly = settings_.get("max_budget")
    return Budgets(
        daily=round(sum(daily_by_group.values()), 2),
        daily_by_group=dict(daily_by_group),
        monthly=float(monthly) if isinstance(monthly, int | float) else round(sum(monthly_by_provider.values()), 2),
        monthly_by_provider=monthly_by_provider,
        provider_of_group=provider_of_group,
    )


@dataclass(frozen=True)
class Spend:
    """USD spent by (model group, provider): the day and the month, and which of LiteLLM's records said so."""

    source: str  # "litellm-db" | "redis"
    note: str
    day: dict[tuple[str, str], float] = field(default_factory=dict)
    month: dict[tuple[str, str], float] = field(default_factory=dict)  # group "" where the source has no split
    day_since: datetime | None = None
    month_since: datetime | None = None

    @property
    def day_total(self) -> float:
        return sum(self.day.values())

    @property
    def month_total(self) -> float:
        return sum(self.month.values())

    def by(self, period: str, axis: str) -> dict[str, float]:
        """Given "day" or "month" and "group" or "provider", return USD by that axis, largest first (no empty names)."""
        totals: dict[str, float] = defaultdict(float)
        for (group, provider), usd in (self.day if period == "day" else self.month).items():
            name = group if axis == "group" else provider
            if name:
                totals[name] += usd
        return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))

    def period(self, name: str) -> dict[str, Any]:
        """Given "day" or "month", return its total, when it began and its splits."""
        total, since = (self.day_total, self.day_since) if name == "day" else (self.month_total, self.month_since)
        return {"total": round(total, 6), "since": _iso(since), "by_group": self.by(name, "group"),
                "by_provider": self.by(name, "provider")}  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "note": self.note, "day": self.period("day"), "month": self.period("month")}


def _iso(when: datetime | None) -> str | None:
    return when.isoformat(timespec="seconds") if when else None


def _number(raw: Any) -> float:
    """LiteLLM's cache stores a float as its text or as JSON (a quoted string, even); return it, 0.0 if absent."""
    if raw is None:
        return 0.0
    value = json.loads(raw) if isinstance(raw, str) and raw.startswith('"') else raw
    return float(value)


def redis_spend(client: redis.Redis, groups_by_id: dict[str, str], provider_of_group: dict[str, str], note: str = "") -> Spend:
    """Given a client of LiteLLM's Redis and its deployment ids' groups, return the spend of the budget limiter's windows.

    A deployment id the gateway did not name is shown as "deployment <id>". Raise ServiceError if Redis fails.
    """
    day: dict[tuple[str, str], float] = defaultdict(float)
    month: dict[tuple[str, str], float] = defaultdict(float)
    starts: dict[str, list[float]] = {"day": [], "month": []}
    try:
        for key in sorted(client.scan_iter(match="deployment_spend:*:1d", count=500)):
            model_id = str(key).split(":", 1)[1].rsplit(":", 1)[0]
            group = groups_by_id.get(model_id, f"deployment {model_id[:12]}")
            day[(group, provider_of_group.get(group, UNKNOWN))] += _number(client.get(key))
            if start := client.get(f"deployment_budget_start_time:{model_id}"):
                starts["day"].append(_number(start))
        for key in sorted(client.scan_iter(match="provider_spend:*:30d", count=500)):
            provider = str(key).split(":", 1)[1].rsplit(":", 1)[0]
            month[("", provider)] += _number(client.get(key))
            if start := client.get(f"provider_budget_start_time:{provider}"):
                starts["month"].append(_number(start))
    except (redis.RedisError, ValueError) as exc:
        raise ServiceError(f"cannot read LiteLLM's spend counters in Redis: {exc}") from exc

    def since(times: list[float]) -> datetime | None:
        return datetime.fromtimestamp(min(times), UTC) if times else None

    text = "LiteLLM's budget counters in Redis (its database is off): 1-day windows per deployment, 30-day per provider"
    return Spend(
        "redis", text + (f"; {note}" if note else ""), dict(day), dict(month), since(starts["day"]), since(starts["month"])
    )


def database_spend(query: Callable[..., list[list[str]]], now: datetime) -> Spend:
    """Given psql's query on LiteLLM's database and the time, return the spend logs' sums for the UTC day and month.

    Raise ServiceError if the query fails (no such table: LiteLLM has not migrated its database yet).
    """
    day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    month_start = day_start.replace(day=1)
    rows = query(
        "SELECT coalesce(nullif(model_group, ''), nullif(model, ''), '?'), coalesce(nullif(custom_llm_provider, ''), '?'), "
        "coalesce(sum(spend) FILTER (WHERE \"startTime\" >= :'day'), 0), coalesce(sum(spend), 0) "
        f"FROM {SPEND_LOGS} WHERE \"startTime\" >= :'month' GROUP BY 1, 2;",
        day=day_start.strftime("%Y-%m-%d %H:%M:%S"),  # "startTime" is a timestamp without time zone, in UTC
        month=month_start.strftime("%Y-%m-%d %H:%M:%S"),
    )
    day = {(r[0], r[1]): float(r[2]) for r in rows if float(r[2])}
    month = {(r[0], r[1]): float(r[3]) for r in rows}
    return Spend(
        "litellm-db", "LiteLLM's spend logs in its database (calendar day and month, UTC)", day, month, day_start, month_start
    )


def gateway_deployment_ids(settings: Settings, timeout: float = 5.0) -> dict[str, str]:
    """Given Settings, return {deployment id: model group} from the gateway's /model/info.

    Raise OpsError if the gateway is not configured or does not answer.
    """
    from ops.code import gateway_of

    gateway = gateway_of(settings)
    try:
        response = httpx.get(
            f"{gateway.url}/model/info", headers={"Authorization": f"Bearer {gateway.master_key}"}, timeout=timeout
        )
        response.raise_for_status()
        data = response.json().get("data") or []
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise ServiceError(f"the gateway's /model/info did not answer: {exc}") from exc
    return {
        str(m["model_info"]["id"]): str(m["model_name"])
        for m in data
        if isinstance(m, dict) and isinstance(m.get("model_info"), dict) and m["model_info"].get("id") and m.get("model_name")
    }


SPEND_TIMEOUT = 10.0  # seconds for psql's spend query: the alert check runs every minute under cron's 50 s


def spend_psql(settings: Settings, timeout: float = SPEND_TIMEOUT) -> Psql:
    """Given Settings, return the psql that reads LiteLLM's database within timeout seconds, bounded inside the
    Postgres container too (PGCONNECT_TIMEOUT, `timeout -s KILL`: killing `docker compose exec` leaves the psql
    running there, moby/moby#9098), as ops health's probe does. Raise ConfigError on a bad OPS_POSTGRES_URL."""
    from ops.health.probes.postgres import access

    return access(settings, timeout, database="litellm")[0]


def read_spend(settings: Settings, now: datetime | None = None) -> Spend:
    """Given Settings, return the spend from LiteLLM's database when it is on, else from its Redis counters.

    Raise OpsError (ServiceError naming the source) if that source cannot be read.
    """
    from ops.code import litellm_db_on

    if litellm_db_on(settings):
        return database_spend(spend_psql(settings).query, now or datetime.now(UTC))
    from ops.events.context import events_config

    try:
        ids, note = gateway_deployment_ids(settings), ""
    except OpsError as exc:
        ids, note = {}, f"deployments named by id: {exc}"
    return redis_spend(events_config(settings).client(), ids, budgets(settings).provider_of_group, note)


@dataclass(frozen=True)
class CostReport:
    spend: Spend
    budgets: Budgets

    def to_dict(self) -> dict[str, Any]:
        return {"spend": self.spend.to_dict(), "budgets": self.budgets.to_dict()}

    def lines(self) -> list[str]:
        """Return the report as text: the source, then the day and the month against their budgets."""
        s, b = self.spend, self.budgets
        out = [f"source: {s.note}"]
        since = f" (window since {s.day_since:%Y-%m-%d %H:%M} UTC)" if s.day_since and s.source == "redis" else ""
        out.append(
            f"today{since}: ${s.day_total:.2f} of the ${b.daily:.2f} daily budget "
            f"(alerts above ${b.day_warn:.2f} and ${b.day_alert:.2f})"
        )
        for name, usd in s.by("day", "group").items():
            out.append(f"  {name:<22} ${usd:>8.4f}" + (f" of ${b.daily_by_group[name]:.2f}" if name in b.daily_by_group else ""))
        for name, usd in s.by("day", "provider").items():
            out.append(f"  provider {name:<13} ${usd:>8.4f}")
        since = f" (window since {s.month_since:%Y-%m-%d %H:%M} UTC)" if s.month_since and s.source == "redis" else ""
        out.append(f"this month{since}: ${s.month_total:.2f} of the ${b.monthly:.2f} stop (alert above ${b.month_alert:.2f})")
        for name, usd in s.by("month", "group").items():
            out.append(f"  {name:<22} ${usd:>8.4f}")
        for name, usd in s.by("month", "provider").items():
            limit = b.monthly_by_provider.get(name)
            out.append(f"  provider {name:<13} ${usd:>8.4f}" + (f" of ${limit:.2f}" if limit is not None else ""))
        if s.source == "redis":
            out.append("  (Redis keeps the 30-day spend per provider only: no split by model group)")
        return out


def run_cost(settings: Settings, now: datetime | None = None) -> CostReport:
    """Given Settings, return the spend today and this month against the budgets.

    Raise ConfigError if litellm-config.yaml is malformed, ServiceError if the spend cannot be read.
    """
    return CostReport(read_spend(settings, now), budgets(settings))
