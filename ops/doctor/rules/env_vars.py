"""Every variable the files use is defined in vps.env.example (and in vps.env when it exists)."""

from __future__ import annotations

import re

from ops.doctor import DoctorContext, Finding
from ops.stack import variables_in

NAME = "env-vars"
DESCRIPTION = "every ${VAR}, os.environ/VAR and {$VAR} is defined in vps.env.example and vps.env"


def used_variables(ctx: DoctorContext) -> dict[str, tuple[str, bool]]:
    """Return each variable the stack's files use: (file that uses it, whether it has a default)."""
    used: dict[str, tuple[str, bool]] = {}
    settings = ctx.settings
    if ctx.stack is not None:
        for var, has_default in variables_in(ctx.stack.text).items():
            used[var] = (settings.compose_file.name, has_default)
    for path, pattern in ((settings.litellm_config, r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)"), (settings.caddyfile, r"\{\$([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}")):
        if path.is_file():
            for var in re.findall(pattern, path.read_text(encoding="utf-8")):
                used.setdefault(var, (path.name, False))
    return used


def check(ctx: DoctorContext) -> list[Finding]:
    findings = []
    settings = ctx.settings
    for var, (where, has_default) in sorted(used_variables(ctx).items()):
        if var not in settings.example_env and not has_default:
            findings.append(Finding(NAME, "error", f"{var} is used in {where} but not listed in {settings.env_example.name}"))
        elif settings.env_file_present and var not in settings.env and not has_default:
            findings.append(Finding(NAME, "error", f"{var} is used in {where} but not set in {settings.env_file.name}"))
    return findings
