"""The Docker SDK for what the compose CLI does not report: memory use against the limit, restarts, OOM kills."""

from __future__ import annotations

import os
from typing import Any

import docker
from docker.errors import DockerException

from ops.errors import ServiceError


def client(docker_host: str | None) -> Any:
    """Return a Docker client for docker_host (ssh://user@host uses the ssh binary), or the local engine."""
    host = docker_host or os.environ.get("DOCKER_HOST")
    try:
        if host:
            return docker.DockerClient(base_url=host, use_ssh_client=host.startswith("ssh://"), timeout=30)
        return docker.from_env(timeout=30)
    except DockerException as exc:
        raise ServiceError(f"the Docker engine at {host or 'the local socket'} is unreachable: {exc}") from exc


def container_stats(docker_host: str | None, container_id: str) -> dict[str, Any]:
    """Given a container id, return its memory use and limit (MiB), CPU share, restarts and OOM-kill flag."""
    try:
        container = client(docker_host).containers.get(container_id)
        stats = container.stats(stream=False)
    except DockerException as exc:
        raise ServiceError(f"cannot read the stats of container {container_id[:12]}: {exc}") from exc
    memory = stats.get("memory_stats", {})
    cpu, pre = stats.get("cpu_stats", {}), stats.get("precpu_stats", {})
    cpu_delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or 1
    state = container.attrs.get("State", {})
    return {
        "memory_mb": round(memory.get("usage", 0) / 2**20, 1),
        "limit_mb": round(memory.get("limit", 0) / 2**20, 1),
        "cpu_percent": round(cpu_delta / system_delta * cpus * 100, 1) if system_delta > 0 else 0.0,
        "restarts": container.attrs.get("RestartCount", 0),
        "oom_killed": bool(state.get("OOMKilled")),
        "status": state.get("Status", ""),
    }
