"""vps.env, when present, holds strong generated secrets and is readable by its owner only."""

from __future__ import annotations

from ops.doctor import DoctorContext, Finding
from ops.secrets import secret_problems, setting_problems

NAME = "secrets"
DESCRIPTION = "no placeholder or weak secret, no template domain, e-mail or bucket, a provider key; vps.env is mode 600"


def check(ctx: DoctorContext) -> list[Finding]:
    settings = ctx.settings
    if not settings.env_file_present:
        return [
            Finding(
                NAME, "warning", f"{settings.env_file.name} not found (create it with `ops secrets init`); secrets not checked"
            )
        ]
    problems = [*secret_problems(settings.env), *setting_problems(settings.env, settings.profiles)]
    findings = [Finding(NAME, "error", f"{settings.env_file.name}: {p}") for p in problems]
    mode = settings.env_file.stat().st_mode & 0o777
    if mode & 0o077:
        findings.append(
            Finding(NAME, "error", f"{settings.env_file.name} is mode {mode:o}; run chmod 600 {settings.env_file.name}")
        )
    return findings
