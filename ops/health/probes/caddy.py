"""Caddy: an HTTPS request for LITELLM_DOMAIN at its published 443 on this machine (OPS_CADDY_URL).

Caddy is up when it completes the TLS handshake with a certificate valid for the name and answers
HTTP, whatever the status: a 502 there means LiteLLM behind it does not answer, which LiteLLM's own
line reports. Its admin API (Caddyfile: `admin localhost:2019`) listens inside the container only.
source: the Caddyfile's LiteLLM site leaves /health/* open to the API (no basic auth); the docker-compose.vps.yml
caddy service publishes 80 and 443 on every address, 127.0.0.1 included.
"""

from __future__ import annotations

from ops.config import Settings
from ops.health.base import ProbeResult, measure
from ops.health.http import Endpoint, get, through_caddy, trust

NAME = "caddy"
PATH = "/health/liveliness"


def endpoint(settings: Settings) -> Endpoint:
    """Given Settings, return where Caddy is asked (by LITELLM_DOMAIN when set). Raise ConfigError on a bad URL."""
    return through_caddy(settings, settings.effective_env.get("LITELLM_DOMAIN", "").strip())


def probe(settings: Settings, timeout: float) -> ProbeResult:
    where = endpoint(settings)
    context = trust()

    def exchange() -> str:
        response = get(where, PATH, timeout, context)
        behind = " (the upstream behind it does not answer)" if response.status_code in (502, 503, 504) else ""
        return f"answered HTTP {response.status_code} at {where.where}{PATH}{behind}"

    return measure(NAME, exchange)
