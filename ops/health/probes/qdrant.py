"""Qdrant: its readiness probe at OPS_QDRANT_URL (the VM's loopback port 127.0.0.1:6333, as `ops backup` uses).

source: qdrant/qdrant v1.15.4 src/actix/api/service_api.rs, readyz: GET /readyz answers 200 "all shards are ready",
503 "some shards are not ready"; src/actix/mod.rs exempts /readyz from the API key (api_key_whitelist).
"""

from __future__ import annotations

from ops.config import Settings
from ops.health.base import ProbeResult
from ops.health.http import Endpoint, probe_ready, url_endpoint

NAME = "qdrant"
DEFAULT = "http://127.0.0.1:6333"
PATH = "/readyz"


def endpoint(settings: Settings) -> Endpoint:
    """Given Settings, return where Qdrant is asked. Raise ConfigError on a malformed OPS_QDRANT_URL."""
    return url_endpoint(settings, "OPS_QDRANT_URL", DEFAULT)


def probe(settings: Settings, timeout: float) -> ProbeResult:
    """Given Settings and seconds, return Qdrant's result: ok when /readyz answers "all shards are ready".

    Raise ConfigError on a malformed OPS_QDRANT_URL.
    """
    where = endpoint(settings)
    return probe_ready(NAME, where, PATH, timeout, lambda r: r.text.startswith("all shards are ready"))
