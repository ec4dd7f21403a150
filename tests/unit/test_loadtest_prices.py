"""Prices in model_info (where the shipped config keeps them, so LiteLLM registers them once) count as stated."""

from ops.gateway.litellm_config import as_deployment, deployments, load_config, missing_prices
from tests.conftest import REPO

PARAMS = {"model": "openai/gpt-5.4-2026-03-05", "api_key": "os.environ/OPENAI_API_KEY"}


def test_prices_in_model_info_are_the_deployment_s_prices() -> None:
    entry = {
        "model_name": "gpt-4",
        "litellm_params": PARAMS,
        "model_info": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
    }
    deployment = as_deployment(entry)
    assert deployment is not None and missing_prices(deployment.params) == []
    assert deployment.params["api_key"] == "os.environ/OPENAI_API_KEY"  # litellm_params kept whole


def test_a_price_in_litellm_params_wins_and_none_anywhere_is_missing() -> None:
    entry = {
        "model_name": "x",
        "litellm_params": {**PARAMS, "input_cost_per_token": 3e-6},
        "model_info": {"input_cost_per_token": 1e-6},
    }
    deployment = as_deployment(entry)
    assert deployment is not None
    assert deployment.params["input_cost_per_token"] == 3e-6 and missing_prices(deployment.params) == ["output_cost_per_token"]


def test_the_shipped_config_states_every_price_in_model_info_only() -> None:
    data = load_config(REPO / "litellm-config.yaml")
    for entry in data["model_list"]:
        assert {"input_cost_per_token", "output_cost_per_token"} <= set(entry["model_info"]), entry["model_name"]
        assert not {"input_cost_per_token", "output_cost_per_token"} & set(entry["litellm_params"]), entry["model_name"]
    assert all(missing_prices(d.params) == [] for d in deployments(data))
