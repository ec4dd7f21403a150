"""LiteLLM's mode matches what it is given: without its database the monthly stop is a 30-day provider budget,
and traces go where a Langfuse runs.

Without DATABASE_URL LiteLLM does not enforce litellm_settings.max_budget: it
says so at start ("A proxy-wide budget ... is configured but no database is
connected, so the budget will NOT be enforced"; source: litellm
proxy/proxy_server.py, ProxyStartupEvent._warn_budget_without_db). Provider
budgets live in Redis and need no database (source: litellm
router_strategy/budget_limiter.py).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import yaml

from ops.doctor import DoctorContext, Finding
from ops.errors import ConfigError
from ops.memory import merged_services
from ops.secrets import SELF_HOSTED_LANGFUSE_KEY
from ops.stack import Service

NAME = "gateway"
DESCRIPTION = (
    "LiteLLM without its database has a 30-day provider budget per provider; LANGFUSE_HOST is empty or runs, "
    "with that Langfuse's keys"
)
MONTH_DAYS = 28  # a budget period this long or longer is a monthly stop


def period_days(period: str) -> float:
    """Given a LiteLLM budget period (30d, 24h, 1mo), return its length in days; 0 if unreadable."""
    units = {"s": 1 / 86400, "m": 1 / 1440, "h": 1 / 24, "d": 1.0, "w": 7.0, "mo": 30.0}
    text = str(period).strip().lower()
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * units[unit]
    return 0.0


def _config(ctx: DoctorContext) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(ctx.settings.litellm_config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None  # the litellm-config rule reports it
    return data if isinstance(data, dict) else None


def check(ctx: DoctorContext) -> list[Finding]:
    if ctx.stack is None:
        return []
    try:
        services = {s.name: s for s in merged_services(ctx.stack, ctx.settings.compose_overrides)}
    except ConfigError as exc:
        return [Finding(NAME, "error", str(exc))]
    findings = []
    litellm = services.get("litellm")
    config = _config(ctx)
    environment = (litellm.spec.get("environment") if litellm else None) or {}
    with_database = isinstance(environment, dict) and bool(environment.get("DATABASE_URL"))
    if litellm is not None and config is not None and not with_database:
        budgets = (config.get("router_settings") or {}).get("provider_budget_config") or {}
        providers = sorted(
            {
                str((entry.get("litellm_params") or {}).get("model", "")).split("/", 1)[0]
                for entry in config.get("model_list") or []
                if isinstance(entry, dict)
            }
            - {""}
        )
        monthly = {
            p: float(b.get("budget_limit") or 0)
            for p, b in budgets.items()
            if isinstance(b, dict) and period_days(str(b.get("time_period", ""))) >= MONTH_DAYS
        }
        missing = [p for p in providers if p not in monthly]
        if missing:
            findings.append(
                Finding(
                    NAME,
                    "error",
                    f"LiteLLM runs without its database, so litellm_settings.max_budget is not enforced; providers "
                    f"{', '.join(missing)} have no 30-day budget in router_settings.provider_budget_config: "
                    "nothing stops the month's spend",
                )
            )
        max_budget = (config.get("litellm_settings") or {}).get("max_budget")
        if max_budget and monthly and sum(monthly.values()) > float(max_budget):
            findings.append(
                Finding(
                    NAME,
                    "error",
                    f"the 30-day provider budgets add up to ${sum(monthly.values()):g}, over the monthly stop "
                    f"litellm_settings.max_budget ${float(max_budget):g}",
                )
            )
    findings.extend(_langfuse_host(ctx, services))
    return findings


def _langfuse_host(ctx: DoctorContext, services: dict[str, Service]) -> list[Finding]:
    """LANGFUSE_HOST names a Langfuse that runs, with keys it knows; every prompt goes there."""
    env = ctx.settings.effective_env
    raw = env.get("LANGFUSE_HOST", "").strip()
    if not raw:
        return []  # no tracing: LiteLLM gets no keys and sends nothing (the default)
    url = urlparse(raw)
    host = url.hostname or ""
    if url.scheme not in ("http", "https") or not host:
        return [
            Finding(
                NAME,
                "error",
                f"LANGFUSE_HOST must be a URL like https://cloud.langfuse.com or http://langfuse-web:3000, got {raw!r}",
            )
        ]
    findings = []
    if host in services and not services[host].enabled_with(ctx.settings.profiles):
        profiles = ", ".join(services[host].profiles)
        findings.append(
            Finding(
                NAME,
                "error",
                f"LANGFUSE_HOST points at the {host} container, which only profile {profiles} starts (not enabled): "
                "enable it or send traces to Langfuse Cloud (https://cloud.langfuse.com and the project's keys)",
            )
        )
    if host not in services:  # a Langfuse off this VM (Cloud): it receives every prompt, whatever the keys
        generated = [
            name
            for name, prefix in zip(("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"), SELF_HOSTED_LANGFUSE_KEY, strict=True)
            if env.get(name, "").startswith(prefix)
        ]
        if generated:
            findings.append(
                Finding(
                    NAME,
                    "error",
                    f"LANGFUSE_HOST is {raw}, outside this VM, but {' and '.join(generated)} "
                    f"{'is the key' if len(generated) == 1 else 'are the keys'} `ops secrets init` generated for a "
                    f"self-hosted Langfuse: LiteLLM would send every prompt to {host}, which refuses them; paste that "
                    "project's keys, or empty LANGFUSE_HOST to send no traces",
                )
            )
    return findings
