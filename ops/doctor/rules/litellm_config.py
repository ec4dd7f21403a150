"""litellm-config.yaml is well formed, every model group has a fallback, and no key is written in it.

Prices are the model-lifecycle rule's: whether a deployment must state one depends on LiteLLM's price map.
"""

from __future__ import annotations

from typing import Any

from ops.doctor import DoctorContext, Finding
from ops.errors import ConfigError
from ops.gateway.litellm_config import as_deployment, load_config

NAME = "litellm-config"
DESCRIPTION = "litellm-config.yaml valid; every model group has a fallback; keys come from the environment"


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
    try:
        data = load_config(ctx.settings.litellm_config)
    except ConfigError as exc:
        return [Finding(NAME, "error", str(exc))]
    findings = []
    groups: list[str] = []
    for index, entry in enumerate(data["model_list"]):
        deployment = as_deployment(entry)
        if deployment is None:
            findings.append(Finding(NAME, "error", f"model_list[{index}] needs model_name and litellm_params.model"))
            continue
        groups.append(deployment.group)
        if not deployment.provider:
            findings.append(
                Finding(
                    NAME,
                    "error",
                    f"model {deployment.group!r}: litellm_params.model {deployment.model!r} names no provider (provider/model)",
                )
            )
        value = deployment.params.get("api_key")
        if value is not None and not str(value).startswith("os.environ/"):
            findings.append(
                Finding(NAME, "error", f"model {deployment.group!r}: api_key is written in the file; use os.environ/NAME")
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
    settings = data.get("litellm_settings") or {}
    # LiteLLM's v2 logger ("langfuse") or ours (ops/gateway/callbacks/aistack_langfuse.py) traces the calls
    callbacks = [*(settings.get("success_callback") or []), *(settings.get("callbacks") or [])]
    if "langfuse" not in callbacks and "aistack_langfuse.exporter" not in callbacks:
        findings.append(
            Finding(
                NAME,
                "warning",
                "litellm_settings sets no Langfuse callback (langfuse or aistack_langfuse.exporter): calls are not traced",
            )
        )
    return findings
