"""LiteLLM: its readiness probe at OPS_GATEWAY_URL (the VM's loopback port 127.0.0.1:4000, as `ops slice` uses).

source: litellm 1.100.5 proxy/health_endpoints/_health_endpoints.py, health_readiness: GET /health/readiness needs
no key; 200 {"status": "healthy", "db": ...} when ready; 503 while shutting down or when its configured database
does not answer. (/health itself calls every model's provider: not a probe to run every minute.)
"""

from __future__ import annotations

from ops.config import Settings
from ops.health.base import ProbeResult
from ops.health.http import Endpoint, json_status, probe_ready, url_endpoint

NAME = "litellm"
DEFAULT = "http://127.0.0.1:4000"
PATH = "/health/readiness"


def endpoint(settings: Settings) -> Endpoint:
    """Given Settings, return where LiteLLM is asked. Raise ConfigError on a malformed OPS_GATEWAY_URL."""
    return url_endpoint(settings, "OPS_GATEWAY_URL", DEFAULT)


def probe(settings: Settings, timeout: float) -> ProbeResult:
    """Given Settings and seconds, return LiteLLM's result: ok when /health/readiness answers {"status": "healthy"}.

    Raise ConfigError on a malformed OPS_GATEWAY_URL.
    """
    where = endpoint(settings)
    return probe_ready(NAME, where, PATH, timeout, json_status("healthy"))
