"""n8n: its readiness probe, through Caddy by N8N_DOMAIN with the basic-auth login, or at OPS_N8N_URL when set.

source: n8n 2.40.7 dist/abstract-server.js, setupHealthCheck: GET /healthz/readiness answers 200 {"status": "ok"}
once the database is connected and migrated and the server fully started, else 503 {"status": "error"}
(/healthz answers before that). n8n publishes no port: Caddy is its only way in, and Caddy puts basic auth
in front of every path but the trigger ones, /healthz included (Caddyfile), so the probe sends
BASIC_AUTH_USER and BASIC_AUTH_PASSWORD.
"""

from __future__ import annotations

from ops.config import Settings
from ops.errors import ConfigError
from ops.health.base import ProbeResult
from ops.health.http import Endpoint, json_status, probe_ready, through_caddy, url_endpoint

NAME = "n8n"
PATH = "/healthz/readiness"


def endpoint(settings: Settings) -> Endpoint:
    """Given Settings, return where n8n is asked. Raise ConfigError if neither OPS_N8N_URL nor N8N_DOMAIN is set."""
    env = settings.effective_env
    if env.get("OPS_N8N_URL"):
        return url_endpoint(settings, "OPS_N8N_URL", "http://n8n:5678")
    domain = env.get("N8N_DOMAIN", "").strip()
    if not domain:
        raise ConfigError("N8N_DOMAIN is empty (and OPS_N8N_URL too): there is no address to ask n8n at")
    user, password = env.get("BASIC_AUTH_USER", ""), env.get("BASIC_AUTH_PASSWORD", "")
    return through_caddy(settings, domain, (user, password) if password else None)


def probe(settings: Settings, timeout: float) -> ProbeResult:
    where = endpoint(settings)
    return probe_ready(NAME, where, PATH, timeout, json_status("ok"))
