"""Plain `docker compose` in the project directory reaches the stack the way ops does.

Compose reads .env in the project directory when no --env-file is given, and takes
COMPOSE_FILE from it (source: docs.docker.com, compose envvars). `ops secrets init`
links .env to vps.env, whose COMPOSE_FILE names the compose file; ops itself passes
-f for the file and each of OPS_COMPOSE_OVERRIDES, so the two must agree, or a
`docker compose exec` from the runbook fails or reaches other containers.
"""

from __future__ import annotations

import os

from ops.doctor import DoctorContext, Finding
from ops.errors import ConfigError
from ops.secrets import DOTENV

NAME = "plain-compose"
DESCRIPTION = ".env links to vps.env, whose COMPOSE_FILE lists the compose file and OPS_COMPOSE_OVERRIDES as ops uses them"


def expected_compose_file(ctx: DoctorContext) -> str:
    """Given the context, return the COMPOSE_FILE value that names what ops passes with -f. Raise ConfigError on bad overrides."""
    settings = ctx.settings
    paths = (settings.compose_file, *settings.compose_overrides)
    return ":".join(str(path.relative_to(settings.project_dir)) for path in paths)


def check(ctx: DoctorContext) -> list[Finding]:
    settings = ctx.settings
    if not settings.env_file_present:
        return []
    fix = "`ops secrets add-missing` links it"
    dotenv = settings.project_dir / DOTENV
    findings = []
    if not (dotenv.exists() or dotenv.is_symlink()):
        findings.append(Finding(NAME, "warning", f"no {DOTENV} in the project: plain `docker compose` finds nothing; {fix}"))
    elif not (dotenv.is_symlink() and os.readlink(dotenv) == settings.env_file.name):
        findings.append(
            Finding(
                NAME,
                "warning",
                f"{DOTENV} is not a link to {settings.env_file.name}: plain `docker compose` reads it instead; "
                f"move it away, then {fix}",
            )
        )
    try:
        expected = expected_compose_file(ctx)
    except ConfigError:
        return findings  # the overrides' own error is said by the rules that read them
    actual = settings.env.get("COMPOSE_FILE")
    if actual != expected:
        findings.append(
            Finding(
                NAME,
                "warning",
                f"COMPOSE_FILE is {actual!r} in {settings.env_file.name}, not {expected!r}: plain `docker compose` "
                "would use other files than ops; set it so",
            )
        )
    return findings
