"""Runbook operations on one service: restart, logs, stats, exec. Local or over DOCKER_HOST=ssh://."""

from __future__ import annotations

from typing import Any

from ops.config import Settings
from ops.errors import OpsError
from ops.runtime.compose import Compose
from ops.runtime.docker import container_stats
from ops.stack import load_stack


def run_runbook(settings: Settings, action: str, service: str, command: list[str], tail: int = 100) -> str | dict[str, Any]:
    """Run action on service; return its text output, or for stats a dict. Raise OpsError for an unknown service."""
    known = {s.name for s in load_stack(settings.compose_file).services}
    if service not in known:
        raise OpsError(f"unknown service {service!r}; the stack has {', '.join(sorted(known))}")
    compose = Compose.for_settings(settings)
    if action == "restart":
        compose.run("restart", service)
        return f"restarted {service}"
    if action == "logs":
        return compose.run("logs", "--no-color", "--tail", str(tail), service).stdout
    if action == "exec":
        if not command:
            raise OpsError("exec needs a command, for example: ops runbook exec redis -- redis-cli ping")
        return compose.exec(service, *command)
    if action == "stats":
        state = compose.ps().get(service)
        if state is None or not state.container_id:
            raise OpsError(f"service {service!r} has no container (is it up?)")
        return {"service": service, **container_stats(compose.docker_host, state.container_id)}
    raise OpsError(f"unknown runbook action {action!r}")
