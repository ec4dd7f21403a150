"""Caddy: an HTTPS request for LITELLM_DOMAIN at its published 443 on this machine (OPS_CADDY_URL).

Caddy is up when it completes the TLS handshake with a certificate valid for the name and answers
HTTP, whatever the status: a 502 there means LiteLLM behind it does not answer, which LiteLLM's own
line reports. Its admin API (Caddyfile: `admin localhost:2019`) listens inside the container only.
source: the Caddyfile's LiteLLM site leaves /health/* open to the API (no basic auth); the docker-compose.vps.yml
caddy service publishes 80 and 443 on every address, 127.0.0.1 included.
"""

from __future__ import annotations

from ops.config import Settings
from ops.errors import ConfigError
from ops.health.base import ProbeResult, measure
from ops.health.http import Endpoint, get, through_caddy, trust

NAME = "caddy"
PATH = "/health/liveliness"


def endpoint(settings: Settings) -> Endpoint:
    """Given Settings, return where Caddy is asked: LITELLM_DOMAIN at OPS_CADDY_URL.

    Raise ConfigError naming LITELLM_DOMAIN if it is empty (Caddy serves no site without a name: the answer
    would be a TLS error, not Caddy's state), or OPS_CADDY_URL if it is malformed.
    """
    domain = settings.effective_env.get("LITELLM_DOMAIN", "").strip()
    if not domain:
        raise ConfigError("LITELLM_DOMAIN is empty: ops health asks Caddy for the gateway's site by that name")
    return through_caddy(settings, domain)


def probe(settings: Settings, timeout: float) -> ProbeResult:
    """Given Settings and seconds, return Caddy's result: ok on any HTTP answer for LITELLM_DOMAIN over verified TLS.

    Raise ConfigError as endpoint() does.
    """
    where = endpoint(settings)
    context = trust()

    def exchange() -> str:
        response = get(where, PATH, timeout, context)
        behind = " (the upstream behind it does not answer)" if response.status_code in (502, 503, 504) else ""
        return f"answered HTTP {response.status_code} at {where.where}{PATH}{behind}"

    return measure(NAME, exchange)
