"""Every variable the files use is defined in vps.env.example (and in vps.env when it exists)."""

from __future__ import annotations

import re

from ops.doctor import DoctorContext, Finding
from ops.stack import variables_in

NAME = "env-vars"
DESCRIPTION = "every ${VAR} and {$VAR} is in vps.env.example and vps.env; every os.environ/VAR reaches litellm"


def used_variables(ctx: DoctorContext) -> dict[str, tuple[str, bool]]:
    """Return each variable the stack's files use: (file that uses it, whether it has a default)."""
    used: dict[str, tuple[str, bool]] = {}
    settings = ctx.settings
    if ctx.stack is not None:
        for var, has_default in variables_in(ctx.stack.text).items():
            used[var] = (settings.compose_file.name, has_default)
    if settings.caddyfile.is_file():
        for var in re.findall(r"\{\$([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}", settings.caddyfile.read_text(encoding="utf-8")):
            used.setdefault(var, (settings.caddyfile.name, False))
    return used


def litellm_missing(ctx: DoctorContext) -> list[str]:
    """Return the os.environ/VAR names of litellm-config.yaml that the litellm service's environment lacks."""
    path = ctx.settings.litellm_config
    if ctx.stack is None or not path.is_file() or "litellm" not in {s.name for s in ctx.stack.services}:
        return []
    environment = ctx.stack.service("litellm").spec.get("environment") or {}
    names = set(environment) if isinstance(environment, dict) else {str(e).split("=", 1)[0] for e in environment}
    wanted = set(re.findall(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)", path.read_text(encoding="utf-8")))
    return sorted(wanted - names)


def check(ctx: DoctorContext) -> list[Finding]:
    findings = []
    settings = ctx.settings
    for var, (where, has_default) in sorted(used_variables(ctx).items()):
        if var not in settings.example_env and not has_default:
            findings.append(Finding(NAME, "error", f"{var} is used in {where} but not listed in {settings.env_example.name}"))
        elif settings.env_file_present and var not in settings.env and not has_default:
            findings.append(Finding(NAME, "error", f"{var} is used in {where} but not set in {settings.env_file.name}"))
    for var in litellm_missing(ctx):
        findings.append(
            Finding(
                NAME,
                "error",
                f"{var} is read by {settings.litellm_config.name} (os.environ/{var}) "
                f"but the litellm service's environment does not set it",
            )
        )
    return findings
