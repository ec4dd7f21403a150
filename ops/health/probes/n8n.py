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
    """Given Settings, return where n8n is asked: OPS_N8N_URL, else N8N_DOMAIN through Caddy with its login.

    Raise ConfigError naming the variable if neither OPS_N8N_URL nor N8N_DOMAIN is set, if BASIC_AUTH_USER or
    BASIC_AUTH_PASSWORD is empty for Caddy's way in, or if OPS_N8N_URL is malformed.
    """
    env = settings.effective_env
    if env.get("OPS_N8N_URL"):
        return url_endpoint(settings, "OPS_N8N_URL", "http://n8n:5678")
    domain = env.get("N8N_DOMAIN", "").strip()
    if not domain:
        raise ConfigError("N8N_DOMAIN is empty (and OPS_N8N_URL too): there is no address to ask n8n at")
    for name in ("BASIC_AUTH_USER", "BASIC_AUTH_PASSWORD"):
        if not env.get(name):  # Caddy would answer 401 whatever n8n's state
            raise ConfigError(f"{name} is empty: Caddy asks for its login in front of n8n's health path (or set OPS_N8N_URL)")
    return through_caddy(settings, domain, (env["BASIC_AUTH_USER"], env["BASIC_AUTH_PASSWORD"]))


def probe(settings: Settings, timeout: float) -> ProbeResult:
    """Given Settings and seconds, return n8n's result: ok when /healthz/readiness answers {"status": "ok"}.

    Raise ConfigError as endpoint() does.
    """
    where = endpoint(settings)
    return probe_ready(NAME, where, PATH, timeout, json_status("ok"))
