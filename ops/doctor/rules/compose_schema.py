"""The compose file parses, has the expected structure, and passes `docker compose config`.

The structure is checked by a pure function (``structure_findings``); running
docker compose is tested in tests/integration/test_doctor_tools.py.
"""

from __future__ import annotations

from ops.doctor import DoctorContext, Finding
from ops.doctor.rules._run import run_with_env
from ops.stack import Stack

NAME = "compose-schema"
DESCRIPTION = "docker-compose.vps.yml is valid Compose (structure, and the real `docker compose config`)"

TOP_LEVEL = {"name", "services", "networks", "volumes", "configs", "secrets", "include", "version"}
REQUIRED_SERVICES = {"caddy", "litellm", "n8n", "postgres", "redis", "qdrant", "clickhouse", "langfuse-web", "langfuse-worker"}


def check(ctx: DoctorContext) -> list[Finding]:
    loaded = ctx.stack_or_error
    if ctx.stack is None:
        return [Finding(NAME, "error", str(loaded))]
    findings = structure_findings(ctx.stack)
    if not ctx.programs:
        return findings
    if ctx.compose is None:
        findings.append(Finding(NAME, "warning", "docker compose not found: the full Compose schema was not checked"))
        return findings
    code, output = run_with_env(
        [*ctx.compose, "--env-file", "$ENV_FILE", "-f", str(ctx.settings.compose_file), "config", "--quiet"],
        ctx.check_env,
        ctx.settings.project_dir,
    )
    if code != 0:
        findings.append(Finding(NAME, "error", f"docker compose config rejects the file: {rejection_reason(code, output)}"))
    return findings


def structure_findings(stack: Stack) -> list[Finding]:
    """Given the parsed compose file, return its structural errors: unknown top-level keys, missing services,
    services with neither image nor build, and dependencies on unknown services."""
    findings = []
    for key in stack.data:
        if key not in TOP_LEVEL and not str(key).startswith("x-"):
            findings.append(Finding(NAME, "error", f"unknown top-level key {key!r}"))
    names = {s.name for s in stack.services}
    for missing in sorted(REQUIRED_SERVICES - names):
        findings.append(Finding(NAME, "error", f"service {missing!r} is missing: the stack is incomplete"))
    for service in stack.services:
        if not isinstance(service.spec, dict) or not (service.image or service.spec.get("build")):
            findings.append(Finding(NAME, "error", f"service {service.name!r} has neither image nor build"))
        for dep in service.spec.get("depends_on") or []:
            if dep not in names:
                findings.append(Finding(NAME, "error", f"service {service.name!r} depends on unknown service {dep!r}"))
    return findings


def rejection_reason(code: int, output: str) -> str:
    """Given a refusing `docker compose config`'s exit code and output, return its last line, else the code."""
    return output.splitlines()[-1] if output else str(code)
