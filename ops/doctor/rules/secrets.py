"""vps.env, when present, holds strong generated secrets and is readable by its owner only."""

from __future__ import annotations

from ops.doctor import DoctorContext, Finding
from ops.secrets import secret_problems

NAME = "secrets"
DESCRIPTION = "no placeholder or weak secret in vps.env, and vps.env is mode 600"


def check(ctx: DoctorContext) -> list[Finding]:
    settings = ctx.settings
    if not settings.env_file_present:
        return [
            Finding(
                NAME, "warning", f"{settings.env_file.name} not found (create it with `ops secrets init`); secrets not checked"
            )
        ]
    findings = [Finding(NAME, "error", f"{settings.env_file.name}: {p}") for p in secret_problems(settings.env)]
    mode = settings.env_file.stat().st_mode & 0o777
    if mode & 0o077:
        findings.append(
            Finding(NAME, "error", f"{settings.env_file.name} is mode {mode:o}; run chmod 600 {settings.env_file.name}")
        )
    return findings
