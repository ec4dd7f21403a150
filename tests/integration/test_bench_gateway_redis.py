"""`ops bench gateway` gives each gateway a Redis of its own: budgets spent by one configuration never reach the next.

The shipped configuration counts provider and deployment spend in Redis. With one Redis for the whole run, the
bench's thousands of requests spent gpt-4's daily budget ($2) and the configurations measured after it served
every request through the fallback chain: 8.6 requests/s instead of about 100 (a run of 2026-11-24).
"""

from __future__ import annotations

import contextlib

import pytest
import redis

from ops import tools
from ops.bench.gateway import _redis_env
from tests.conftest import require

pytestmark = pytest.mark.integration


def test_each_gateway_counts_its_spend_in_a_redis_of_its_own() -> None:
    require(tools.redis_server(), "redis-server (apt-get install redis-server)")
    with contextlib.ExitStack() as stack:
        first, second = _redis_env(stack), _redis_env(stack)
        clients = [
            stack.enter_context(redis.Redis(host=e["REDIS_HOST"], port=int(e["REDIS_PORT"]), password=e["REDIS_PASSWORD"]))
            for e in (first, second)
        ]
        clients[0].incrbyfloat("provider_spend:openai:1d", 2.5)  # the first gateway spent past gpt-4's daily $2
        assert clients[1].get("provider_spend:openai:1d") is None
        assert clients[1].dbsize() == 0
