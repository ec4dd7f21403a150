"""The requests `ops code` sends for OpenCode's gateway key, checked against LiteLLM's own request models.

The endpoints need LiteLLM's database, which cannot run here (tests/fakes/litellm_keys.py); what can be
checked is that every field ops sends is one LiteLLM 1.100.5 reads, with a value its model accepts.
In the integration tier because importing LiteLLM's proxy types takes seconds.
"""

from __future__ import annotations

import pytest

from ops.code import key_request, opencode_key_value, update_request

pytestmark = pytest.mark.integration

GROUPS = ["gpt-4", "claude-3", "gemini-2", "cheap", "smart"]


def test_generate_and_update_bodies_are_litellm_s_fields() -> None:
    from litellm.proxy._types import GenerateKeyRequest, UpdateKeyRequest

    body = key_request(opencode_key_value("sk-master-0123456789"), GROUPS, 5.0)
    assert set(body) <= set(GenerateKeyRequest.model_fields), set(body) - set(GenerateKeyRequest.model_fields)
    parsed = GenerateKeyRequest.model_validate(body)
    assert (parsed.key, parsed.key_alias, parsed.models) == (body["key"], "opencode", GROUPS)
    assert (parsed.max_budget, parsed.budget_duration) == (5.0, "1d")
    update = update_request(body)
    assert set(update) <= set(UpdateKeyRequest.model_fields)
    assert UpdateKeyRequest.model_validate(update).max_budget == 5.0


def test_budget_duration_1d_is_a_duration_litellm_reads() -> None:
    from litellm.litellm_core_utils.duration_parser import duration_in_seconds

    assert duration_in_seconds("1d") == 86_400
