"""Redis: PING with the password, at OPS_REDIS_URL or the VM's loopback port 127.0.0.1:6379 with REDIS_PASSWORD.

The same address `ops events` uses (ops/events/context.py). Redis answers PONG, or refuses a wrong or
missing password (WRONGPASS, NOAUTH: redis-py's AuthenticationError). One try: redis-py's retries would
spend the timeout again on a refused connection (source: redis-py 8.1 redis/retry.py; ops/local/processes.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ops.config import Settings, check_url, redact_url
from ops.errors import ConfigError
from ops.health.base import Down, ProbeResult, measure

NAME = "redis"
EXAMPLE = "redis://:PASSWORD@127.0.0.1:6379/0"


def url_of(settings: Settings) -> str:
    """Given Settings, return Redis's URL as ops reaches it. Raise ConfigError naming OPS_REDIS_URL if malformed."""
    env = settings.effective_env
    url = env.get("OPS_REDIS_URL") or f"redis://:{quote(env.get('REDIS_PASSWORD', ''), safe='')}@127.0.0.1:6379/0"
    check_url("OPS_REDIS_URL", url, ("redis", "rediss", "unix"), EXAMPLE)
    return url


def client(settings: Settings, timeout: float) -> tuple[redis.Redis, str]:
    """Given Settings, return a one-try Redis client with timeout and its URL fit for a line (no password)."""
    url = url_of(settings)
    try:
        made = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0), decode_responses=True
        )
    except ValueError:
        raise ConfigError(f"OPS_REDIS_URL is malformed: {redact_url(url)}") from None  # redis-py may quote the password
    return made, redact_url(url)


def ask(command: Callable[[], Any], shown: str, timeout: float) -> Any:
    """Run one Redis command; return its answer. Raise Down saying why Redis did not answer it."""
    try:
        return command()
    except redis.AuthenticationError as exc:  # before ConnectionError, its base class
        raise Down(f"Redis at {shown} refused the password (REDIS_PASSWORD, or OPS_REDIS_URL's): {exc}") from None
    except redis.TimeoutError:
        raise Down(f"no answer within {timeout:g} s from Redis at {shown}") from None
    except redis.ConnectionError as exc:
        raise Down(f"cannot connect to Redis at {shown}: {exc}") from None
    except redis.RedisError as exc:
        raise Down(f"Redis at {shown} refused the command: {exc}") from None


def probe(settings: Settings, timeout: float) -> ProbeResult:
    """Given Settings and seconds, return Redis's result: ok when PING with the password answers PONG.

    Raise ConfigError naming OPS_REDIS_URL if it is malformed.
    """
    connection, shown = client(settings, timeout)

    def exchange() -> str:
        answer = ask(connection.ping, shown, timeout)
        return f"PONG from {shown}" if answer is True else f"answered {answer!r} at {shown}"

    try:
        return measure(NAME, exchange)
    finally:
        connection.close()
