"""The health probes, in the order `ops health` lists them. Add a module here to probe another service.

Each module has NAME (the compose service) and ``probe(settings, timeout) -> ProbeResult`` (ops/health/base.py).
"""

from __future__ import annotations

from ops.health.base import Probe
from ops.health.probes import caddy, langfuse, litellm, n8n, observer, postgres, qdrant, redis

PROBES: tuple[Probe, ...] = (caddy, litellm, n8n, langfuse, qdrant, postgres, redis, observer)
