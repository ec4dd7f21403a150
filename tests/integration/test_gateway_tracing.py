"""Where the real LiteLLM sends traces with what compose gives it (review of issue #10, item 10).

The Langfuse keys and host come from `docker compose config` of a filled-in
vps.env, so the compose file's interpolation is what is under test; only the
provider API bases point at the mock provider.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ops.gateway.callbacks.aistack_langfuse import DISABLED
from ops.local.processes import LiteLLMServer, MockProviderServer, RedisServer, wait_until
from tests.conftest import REPO
from tests.integration.test_doctor_tools import litellm_environment
from tests.integration.test_gateway import gateway_env, redis_module  # noqa: F401 - fixture
from tests.unit.test_doctor import with_env
from tests.unit.test_doctor_hardening import FILLED

pytestmark = pytest.mark.integration
LANGFUSE = ("LANGFUSE_HOST", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY")


def test_a_fresh_vps_env_sends_no_prompt_to_langfuse(
    project: Path,
    mock_provider: MockProviderServer,
    redis_module: RedisServer,  # noqa: F811
) -> None:
    """Without a key the tracing callback is off: the gateway answers, nothing is sent, nothing fails."""
    with_env(FILLED)(project)
    composed = litellm_environment(project)
    env = {**gateway_env(mock_provider, redis_module, ""), **{name: composed[name] for name in LANGFUSE}}
    with LiteLLMServer(REPO / "litellm-config.yaml", env) as gateway:
        headers = {"Authorization": f"Bearer {gateway.master_key}"}
        body = {"model": "gpt-4", "messages": [{"role": "user", "content": "a private prompt"}]}
        response = httpx.post(f"{gateway.url}/v1/chat/completions", headers=headers, json=body, timeout=60)
        assert response.status_code == 200, response.text
        # the config's callback (ops/gateway/callbacks/aistack_langfuse.py) says so when LiteLLM loads it
        wait_until(lambda: DISABLED in gateway.log.read_text(errors="replace"), 30, "the tracing callback", gateway.log)
        log = gateway.log.read_text(errors="replace")
        assert "ERROR:langfuse" not in log and "cloud.langfuse.com" not in log, log[-2000:]
