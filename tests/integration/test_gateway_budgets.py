"""The shipped budgets without LiteLLM's database (issue #10, item 4b): the daily stop per deployment and the
30-day stop per provider both answer 429 before any upstream call, from Redis alone: the spend is made through
one gateway process and refused by the next, as after a restart or a redeploy (review of issue #10, item 20)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ops.local.processes import LiteLLMServer, MockProviderServer, RedisServer, free_port, wait_until
from tests.conftest import REPO
from tests.fakes.llm import MockControl
from tests.integration.test_gateway import control, gateway_env, redis_module  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def spend_then_ask(
    tmp_path: Path, config: dict[str, Any], mock: MockProviderServer, redis: RedisServer, ctl: MockControl, spend: str
) -> httpx.Response:
    """Spend through one gateway, stop it, and ask a new one: only Redis carries the spend (key pattern spend)."""
    import redis as redis_client

    store = redis_client.Redis(port=redis.port, password=redis.password)
    store.flushall()
    path = tmp_path / "litellm-config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = gateway_env(mock, redis, f"http://127.0.0.1:{free_port()}")
    body = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}
    with LiteLLMServer(path, env) as gateway:
        ctl.set("openai", completion_tokens=100_000)  # over a cent at the list price
        first = httpx.post(f"{gateway.url}/v1/chat/completions", headers=auth(gateway), json=body, timeout=60)
        assert first.status_code == 200, first.text

        def spent() -> bool:  # recorded after the response, in LiteLLM's budget limiter's key
            return any(float(store.get(key) or 0) > 0 for key in store.scan_iter(spend))

        wait_until(spent, 30, f"the spend in Redis ({spend})", gateway.log)
    calls = len(ctl.calls())
    with LiteLLMServer(path, env) as gateway:  # a restart: a new process, nothing in its memory
        second = httpx.post(f"{gateway.url}/v1/chat/completions", headers=auth(gateway), json=body, timeout=60)
    assert len(ctl.calls()) == calls  # stopped before the provider
    return second


def auth(gateway: LiteLLMServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {gateway.master_key}"}


def shipped() -> dict[str, Any]:
    """The shipped config without fallbacks: each test sees its own group's answer, not the chain's."""
    config: dict[str, Any] = yaml.safe_load((REPO / "litellm-config.yaml").read_text())
    assert "database_url" not in (config.get("general_settings") or {})
    config["router_settings"]["fallbacks"] = []
    return config


def test_daily_deployment_budget_stops_a_group(
    tmp_path: Path,
    control: MockControl,  # noqa: F811
    mock_provider: MockProviderServer,
    redis_module: RedisServer,  # noqa: F811
) -> None:
    config = shipped()
    gpt4 = next(m for m in config["model_list"] if m["model_name"] == "gpt-4")
    assert gpt4["litellm_params"]["budget_duration"] == "1d"
    gpt4["litellm_params"]["max_budget"] = 0.01
    response = spend_then_ask(tmp_path, config, mock_provider, redis_module, control, "deployment_spend:*:1d")
    assert response.status_code == 429, response.text
    assert "Exceeded budget for deployment" in response.text


def test_30_day_provider_budget_stops_a_provider(
    tmp_path: Path,
    control: MockControl,  # noqa: F811
    mock_provider: MockProviderServer,
    redis_module: RedisServer,  # noqa: F811
) -> None:
    config = shipped()
    openai = config["router_settings"]["provider_budget_config"]["openai"]
    assert openai["time_period"] == "30d"
    openai["budget_limit"] = 0.01
    response = spend_then_ask(tmp_path, config, mock_provider, redis_module, control, "provider_spend:openai:30d")
    assert response.status_code == 429, response.text
    assert "Exceeded budget for provider openai" in response.text
