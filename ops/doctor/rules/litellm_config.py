"""litellm-config.yaml is well formed, every model group has a fallback, and no key is written in it."""

from __future__ import annotations

from typing import Any

import yaml

from ops.doctor import DoctorContext, Finding

NAME = "litellm-config"
DESCRIPTION = "litellm-config.yaml valid; every model group has a fallback and a price; keys come from the environment"


def _fallbacks(router: dict[str, Any]) -> dict[str, list[str]] | str:
    chains: dict[str, list[str]] = {}
    for entry in router.get("fallbacks") or []:
        if not isinstance(entry, dict) or len(entry) != 1:
            return f"router_settings.fallbacks entries must each be {{group: [fallbacks]}}, got {entry!r}"
        ((group, targets),) = entry.items()
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            return f"fallbacks of {group!r} must be a list of model group names"
        chains[str(group)] = targets
    return chains


def check(ctx: DoctorContext) -> list[Finding]:
    path = ctx.settings.litellm_config
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return [Finding(NAME, "error", f"cannot read {path.name}: {exc.strerror}")]
    except yaml.YAMLError as exc:
        return [Finding(NAME, "error", f"{path.name} is not valid YAML: {exc}")]
    if not isinstance(data, dict) or not isinstance(data.get("model_list"), list) or not data["model_list"]:
        return [Finding(NAME, "error", f"{path.name} must have a non-empty model_list")]
    findings = []
    groups: list[str] = []
    for index, entry in enumerate(data["model_list"]):
        params = entry.get("litellm_params") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not entry.get("model_name") or not isinstance(params, dict) or not params.get("model"):
            findings.append(Finding(NAME, "error", f"model_list[{index}] needs model_name and litellm_params.model"))
            continue
        groups.append(str(entry["model_name"]))
        if "/" not in str(params["model"]):
            findings.append(
                Finding(
                    NAME,
                    "error",
                    f"model {entry['model_name']!r}: litellm_params.model {params['model']!r} names no provider (provider/model)",
                )
            )
        for price in ("input_cost_per_token", "output_cost_per_token"):
            if not isinstance(params.get(price), int | float) or params[price] < 0:
                findings.append(
                    Finding(
                        NAME,
                        "error",
                        f"model {entry['model_name']!r} has no {price}: budgets and cost tracking would count it as $0",
                    )
                )
        for key in ("api_key", "api_base"):
            value = params.get(key)
            if key == "api_key" and value is not None and not str(value).startswith("os.environ/"):
                findings.append(
                    Finding(NAME, "error", f"model {entry['model_name']!r}: api_key is written in the file; use os.environ/NAME")
                )
    chains = _fallbacks(data.get("router_settings") or {})
    if isinstance(chains, str):
        return [*findings, Finding(NAME, "error", chains)]
    for group in groups:
        chain = chains.get(group)
        if not chain:
            findings.append(Finding(NAME, "error", f"model group {group!r} has no fallback in router_settings.fallbacks"))
    for group, chain in chains.items():
        for target in chain:
            if target not in groups:
                findings.append(Finding(NAME, "error", f"fallback of {group!r} names unknown model group {target!r}"))
            elif target == group:
                findings.append(Finding(NAME, "error", f"model group {group!r} falls back to itself"))
    master = str((data.get("general_settings") or {}).get("master_key", ""))
    if not master.startswith("os.environ/"):
        findings.append(
            Finding(NAME, "error", "general_settings.master_key must come from the environment (os.environ/LITELLM_MASTER_KEY)")
        )
    callbacks = (data.get("litellm_settings") or {}).get("success_callback") or []
    if "langfuse" not in callbacks:
        findings.append(
            Finding(NAME, "warning", "litellm_settings.success_callback does not include langfuse: calls are not traced")
        )
    return findings
