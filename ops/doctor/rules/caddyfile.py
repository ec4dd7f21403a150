"""The Caddyfile passes the real `caddy validate` with the stack's variables."""

from __future__ import annotations

from ops.doctor import DoctorContext, Finding
from ops.doctor.rules._run import run_with_env

NAME = "caddyfile"
DESCRIPTION = "Caddyfile valid by the real caddy (caddy validate)"


def check(ctx: DoctorContext) -> list[Finding]:
    path = ctx.settings.caddyfile
    if not path.is_file():
        return [Finding(NAME, "error", f"{path.name} not found")]
    if ctx.caddy is None:
        return [Finding(NAME, "warning", "caddy not found: the Caddyfile was not validated (apt-get install caddy)")]
    code, output = run_with_env(
        [ctx.caddy, "validate", "--config", str(path), "--adapter", "caddyfile"], ctx.check_env, ctx.settings.project_dir
    )
    if code != 0:
        reason = next((line for line in reversed(output.splitlines()) if "Error" in line or "error" in line), output[-300:])
        return [Finding(NAME, "error", f"caddy validate rejects {path.name}: {reason.strip()}")]
    return []
