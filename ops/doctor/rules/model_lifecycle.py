"""Every deployment calls a model its provider still serves, and states its price.

The model's lifetime comes from LiteLLM's bundled price map (``deprecation_date``),
read from the installed litellm package without network. A model past that date
is an error, one within WARN_DAYS of it a warning. Prices: every deployment states
``input_cost_per_token`` and ``output_cost_per_token``, because the map drops
retired models and LiteLLM would then count their spend as $0; a stated price
that differs from the map's is a warning (a group moved without its price).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from ops.doctor import DoctorContext, Finding
from ops.errors import ConfigError
from ops.gateway.litellm_config import (
    PRICE_KEYS,
    Deployment,
    bundled_price_map,
    deployments,
    load_config,
    load_price_map,
    lookup_model,
    missing_prices,
    same_price,
)

NAME = "model-lifecycle"
DESCRIPTION = "every deployment's model is in LiteLLM's price map and not retired (or retiring within 60 days); prices stated"
WARN_DAYS = 60
HOWTO = "move the group to a current model (docs/GATEWAY.md, 'Moving a group to a newer model')"


def _retirement(deployment: Deployment, key: str, entry: dict[str, Any], today: date) -> Finding | None:
    raw = entry.get("deprecation_date")
    if not raw:
        return None
    where = f"deprecation_date of {key} in LiteLLM's price map"
    try:
        retired = date.fromisoformat(str(raw))
    except ValueError:
        return Finding(NAME, "warning", f"model {deployment.group!r}: cannot read the {where} ({raw!r})")
    days = (retired - today).days
    if days <= 0:
        return Finding(
            NAME, "error", f"model {deployment.group!r} calls {deployment.model}, deprecated on {retired} ({where}): {HOWTO}"
        )
    if days <= WARN_DAYS:
        return Finding(
            NAME,
            "warning",
            f"model {deployment.group!r} calls {deployment.model}, deprecated on {retired}, in {days} days ({where}): {HOWTO}",
        )
    return None


def lifecycle_findings(deployments: list[Deployment], price_map: dict[str, dict[str, Any]] | None, today: date) -> list[Finding]:
    """Given the deployments, LiteLLM's price map (None if unreadable) and today, return the findings.

    A deployment is reported when its model is retired or retiring, or when it states no price.
    """
    findings: list[Finding] = []
    for deployment in deployments:
        found = lookup_model(price_map, deployment.model) if price_map is not None else None
        missing = missing_prices(deployment.params)
        if found is None:
            known = "is not in" if price_map is not None else "cannot be looked up in"
            findings += [
                Finding(
                    NAME,
                    "error",
                    f"model {deployment.group!r} has no {price}: {deployment.model} {known} LiteLLM's price map, "
                    "so budgets and cost tracking would count it as $0",
                )
                for price in missing
            ]
            continue
        key, entry = found
        findings += [
            Finding(
                NAME,
                "error",
                f"model {deployment.group!r} has no {price}: state it ({key} costs {entry.get(price)} in LiteLLM's "
                "price map, which drops retired models; budgets would then count it as $0)",
            )
            for price in missing
        ]
        findings += [
            Finding(
                NAME,
                "warning",
                f"model {deployment.group!r}: {price} {deployment.params[price]} differs from "
                f"{entry[price]} for {key} in LiteLLM's price map",
            )
            for price in PRICE_KEYS
            if price not in missing and price in entry and not same_price(deployment.params[price], entry[price])
        ]
        retirement = _retirement(deployment, key, entry, today)
        if retirement is not None:
            findings.append(retirement)
    return findings


def check(ctx: DoctorContext) -> list[Finding]:
    try:
        data = load_config(ctx.settings.litellm_config)
    except ConfigError:
        return []  # the litellm-config rule names the problem
    try:
        price_map = load_price_map(bundled_price_map())
    except ConfigError as exc:
        unread = Finding(NAME, "error", f"cannot check whether the models are retired: {exc}")
        return [unread, *lifecycle_findings(deployments(data), None, date.today())]
    return lifecycle_findings(deployments(data), price_map, date.today())
