"""What each third-party image expects of the compose file, from the image's own docs or source.

Each contract names its source. A service matches a contract by its image's
repository, so a retagged or digest-pinned image is checked the same way.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Any

from ops.doctor import DoctorContext, Finding
from ops.stack import Service

NAME = "image-contracts"
DESCRIPTION = "each image's tag, listen address, healthcheck and entrypoint as its docs and source require"


def repository(image: str) -> str:
    """Given an image reference, return its repository without tag or digest (ghcr.io/berriai/litellm)."""
    name = image.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    return head if head and "/" not in tail else name


def _environment(service: Service) -> dict[str, str]:
    env = service.spec.get("environment") or {}
    if isinstance(env, list):
        return dict(str(item).partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items() if not str(k).startswith("<<")}


def _healthcheck_text(service: Service) -> str:
    test = (service.healthcheck or {}).get("test") or []
    return " ".join(str(part) for part in test) if isinstance(test, list) else str(test)


def _litellm_tag(service: Service, ctx: DoctorContext) -> list[str]:
    tag = (service.image or "").split("@", 1)[0].rpartition(":")[2]
    if tag.startswith("main-"):
        # source: LiteLLM release notes v1.100.5 ("published as ghcr.io/berriai/litellm:v1.100.5");
        # the main-* tags are deprecated (docs proxy/upgrade_guide: pin the exact image tag)
        return [f"image tag {tag!r} is a deprecated main-* tag: use the release tag {tag.removeprefix('main-')!r}"]
    return []


def _listens_on_hostname(service: Service, ctx: DoctorContext) -> list[str]:
    # source: langfuse/langfuse worker/src/index.ts (app.listen(env.PORT, env.HOSTNAME)) and Next.js
    # standalone server.js (web): both listen on $HOSTNAME, which Docker sets to the container id
    probes_loopback = re.search(r"(127\.0\.0\.1|localhost)", _healthcheck_text(service))
    if _environment(service).get("HOSTNAME") != "0.0.0.0" and probes_loopback:
        return [
            "listens on $HOSTNAME (the container id under Docker), but its healthcheck probes 127.0.0.1: set HOSTNAME: 0.0.0.0"
        ]
    return []


def _n8n_readiness(service: Service, ctx: DoctorContext) -> list[str]:
    # source: docs.n8n.io monitor-n8n: /healthz answers once the process is up, /healthz/readiness once
    # the database is connected and migrated
    text = _healthcheck_text(service)
    if "/healthz" in text and "/healthz/readiness" not in text:
        return ["healthcheck probes /healthz, which answers before the database is migrated: probe /healthz/readiness"]
    return []


def _redis_entrypoint(service: Service, ctx: DoctorContext) -> list[str]:
    # source: docker-library/redis debian/docker-entrypoint.sh: it drops from root to the redis user
    # only when its first argument is redis-server; a command starting with sh runs as root
    command = service.spec.get("command")
    argv = command if isinstance(command, list) else shlex.split(str(command)) if command else []
    if argv and argv[0] in ("sh", "bash", "/bin/sh", "/bin/bash"):
        script = " ".join(str(a) for a in argv[1:])
        if not re.search(r"\bexec\s+docker-entrypoint\.sh\s+redis-server\b", script):
            return ["command runs a shell, so the image's entrypoint never drops to the redis user: "
                    "end it with `exec docker-entrypoint.sh redis-server ...`"]  # fmt: skip
    return []


def _caddy_admin(service: Service, ctx: DoctorContext) -> list[str]:
    # source: caddyserver.com/docs/caddyfile/options (admin <addr>|off; default localhost:2019)
    path = ctx.settings.caddyfile
    if not path.is_file():
        return []
    match = re.search(r"^\s*admin\s+(\S+)", path.read_text(encoding="utf-8"), re.M)
    admin = match.group(1) if match else "localhost:2019"
    probe = re.search(r"https?://([^/\s:]+):(\d+)", _healthcheck_text(service))
    if probe is None:
        return []
    if admin == "off":
        return [f"healthcheck probes the admin API at {probe.group(1)}:{probe.group(2)}, but the Caddyfile turns it off"]
    host, _, port = admin.rpartition(":")
    if port != probe.group(2) or host not in ("localhost", "127.0.0.1", ""):
        return [f"healthcheck probes {probe.group(1)}:{probe.group(2)}, but the Caddyfile's admin API listens on {admin}"]
    return []


Contract = Callable[[Service, Any], list[str]]
CONTRACTS: dict[str, tuple[Contract, ...]] = {
    "ghcr.io/berriai/litellm": (_litellm_tag,),
    "langfuse/langfuse": (_listens_on_hostname,),
    "langfuse/langfuse-worker": (_listens_on_hostname,),
    "n8nio/n8n": (_n8n_readiness,),
    "redis": (_redis_entrypoint,),
    "caddy": (_caddy_admin,),
}


def check(ctx: DoctorContext) -> list[Finding]:
    if ctx.stack is None:
        return []
    findings = []
    for service in ctx.stack.services:
        for contract in CONTRACTS.get(repository(service.image or ""), ()):
            for message in contract(service, ctx):
                findings.append(Finding(NAME, "error", f"service {service.name!r} ({service.image}): {message}"))
    return findings
