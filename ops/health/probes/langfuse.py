"""Langfuse: its health check with the database required, at OPS_LANGFUSE_URL or through Caddy by LANGFUSE_DOMAIN.

source: langfuse/langfuse v3.174.1 web/src/pages/api/public/health.ts: GET
/api/public/health?failIfDatabaseUnavailable=true runs SELECT 1 on its Postgres and answers 200
{"status": "OK"}, 503 when the database does not answer; no key needed. (/api/public/ready, ready.ts, only
turns 500 once a SIGTERM arrived, so it says less.) Skipped when no Langfuse is configured: the default
has no tracing (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from ops.config import Settings
from ops.health.base import ProbeResult, skipped
from ops.health.http import Endpoint, json_status, probe_ready, through_caddy, url_endpoint

NAME = "langfuse"
PATH = "/api/public/health?failIfDatabaseUnavailable=true"


def endpoint(settings: Settings) -> Endpoint | None:
    """Given Settings, return where Langfuse is asked, or None when there is none. Raise ConfigError on a bad URL."""
    env = settings.effective_env
    if env.get("OPS_LANGFUSE_URL"):
        return url_endpoint(settings, "OPS_LANGFUSE_URL", "https://cloud.langfuse.com")
    domain = env.get("LANGFUSE_DOMAIN", "").strip()
    return through_caddy(settings, domain) if domain else None


def probe(settings: Settings, timeout: float) -> ProbeResult:
    """Given Settings and seconds, return Langfuse's result (skipped when none is configured): ok on {"status": "OK"}.

    Raise ConfigError on a malformed OPS_LANGFUSE_URL or OPS_CADDY_URL.
    """
    where = endpoint(settings)
    if where is None:
        return skipped(NAME, "no Langfuse here: OPS_LANGFUSE_URL and LANGFUSE_DOMAIN are empty (no tracing)")
    return probe_ready(NAME, where, PATH, timeout, json_status("OK"))
