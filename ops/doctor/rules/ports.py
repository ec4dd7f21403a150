"""Only Caddy publishes ports; anything else may bind loopback only (for ssh tunnels)."""

from __future__ import annotations

from ops.doctor import DoctorContext, Finding

NAME = "ports"
DESCRIPTION = "no port published but Caddy's (others may bind 127.0.0.1 only)"
PUBLIC_SERVICE = "caddy"


def check(ctx: DoctorContext) -> list[Finding]:
    if ctx.stack is None:
        return []
    findings = []
    for service in ctx.stack.services:
        if service.name == PUBLIC_SERVICE:
            continue
        for port in service.published_ports:
            if not port.startswith(("127.0.0.1:", "[::1]:", "localhost:")):
                findings.append(
                    Finding(
                        NAME,
                        "error",
                        f"service {service.name!r} publishes {port!r}: only {PUBLIC_SERVICE} may publish ports "
                        "(bind 127.0.0.1 for a tunnel)",
                    )
                )
        if service.spec.get("network_mode") == "host":
            findings.append(
                Finding(NAME, "error", f"service {service.name!r} uses network_mode host, which exposes every port it opens")
            )
    return findings
