"""Read litellm-config.yaml (the model groups and their deployments) and LiteLLM's bundled price map."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.errors import ConfigError
from ops.files import read_json, read_yaml

PRICE_KEYS = ("input_cost_per_token", "output_cost_per_token")
# The map LiteLLM ships in its package and reads with LITELLM_LOCAL_MODEL_COST_MAP=True.
# source: BerriAI/litellm litellm/litellm_core_utils/get_model_cost_map.py (the backup file it falls back to)
PRICE_MAP_FILE = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True)
class Deployment:
    """One model_list entry: the group clients ask for and the provider/model it calls."""

    group: str
    model: str
    params: dict[str, Any]

    @property
    def provider(self) -> str:
        return self.model.split("/", 1)[0] if "/" in self.model else ""


def load_config(config: Path) -> dict[str, Any]:
    """Given litellm-config.yaml, return it parsed. Raise ConfigError if unreadable, not YAML or without a model_list."""
    data = read_yaml(config, config.name)
    if not isinstance(data, dict) or not isinstance(data.get("model_list"), list) or not data["model_list"]:
        raise ConfigError(f"{config.name} must have a non-empty model_list")
    return data


def as_deployment(entry: object) -> Deployment | None:
    """Given one model_list entry, return its Deployment, or None if it lacks model_name or litellm_params.model.

    Its params are litellm_params with the prices of model_info where litellm_params states none (the shipped
    config keeps them in model_info: LiteLLM registers those once, not on every request; litellm-config.yaml).
    """
    if not isinstance(entry, dict):
        return None
    params = entry.get("litellm_params")
    if not entry.get("model_name") or not isinstance(params, dict) or not params.get("model"):
        return None
    info = entry.get("model_info")
    info = info if isinstance(info, dict) else {}
    prices = {key: info[key] for key in PRICE_KEYS if key in info and key not in params}
    return Deployment(str(entry["model_name"]), str(params["model"]), {**params, **prices})


def deployments(data: dict[str, Any]) -> list[Deployment]:
    """Given a parsed litellm-config.yaml, return its well-formed deployments in order."""
    return [d for d in map(as_deployment, data.get("model_list") or []) if d is not None]


def missing_prices(params: dict[str, Any]) -> list[str]:
    """Given a deployment's litellm_params, return the price keys it does not state as a number >= 0."""
    return [
        key
        for key in PRICE_KEYS
        if isinstance(params.get(key), bool) or not isinstance(params.get(key), int | float) or params[key] < 0
    ]


def model_groups(config: Path) -> list[str]:
    """Given litellm-config.yaml, return its model group names in order. Raise ConfigError if malformed."""
    data = load_config(config)
    try:
        return [str(entry["model_name"]) for entry in data["model_list"]]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{config.name}: every model_list entry needs a model_name") from exc


def bundled_price_map() -> Path:
    """Return the path of the price map shipped in the installed litellm package (no import, no network).

    Raise ConfigError if litellm is not installed or its package has no price map.
    """
    spec = importlib.util.find_spec("litellm")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ConfigError("litellm is not installed in this Python, so its bundled price map cannot be read (make install)")
    path = Path(locations[0]) / PRICE_MAP_FILE
    if not path.is_file():
        raise ConfigError(f"the installed litellm has no bundled price map at {path}; reinstall it (make install)")
    return path


def load_price_map(path: Path) -> dict[str, dict[str, Any]]:
    """Given a LiteLLM price map file, return its entries by key. Raise ConfigError if unreadable or not a JSON object."""
    data = read_json(path, f"LiteLLM's price map {path}")
    if not isinstance(data, dict):
        raise ConfigError(f"LiteLLM's price map {path} is not a JSON object")
    return {str(k): v for k, v in data.items() if isinstance(v, dict)}


def lookup_model(price_map: dict[str, dict[str, Any]], model: str) -> tuple[str, dict[str, Any]] | None:
    """Given the price map and a deployment's provider/model, return (key, entry) as LiteLLM finds it, or None.

    Tries the whole name ("openrouter/google/x", "gemini/gemini-x"), then the name
    without its provider ("gpt-5.4"), each exact and then case-insensitive, and
    takes an entry only if it is for that provider.
    source: BerriAI/litellm litellm/utils.py _get_model_info_helper (steps 1-3) and _check_provider_match
    """
    provider, _, bare = model.partition("/")
    if not bare:
        provider, bare = "", model
    lowered = {key.lower(): key for key in price_map}
    for candidate in (model, bare):
        key = candidate if candidate in price_map else lowered.get(candidate.lower())
        if key is None:
            continue
        entry = price_map[key]
        if not provider or entry.get("litellm_provider") in (None, provider):
            return key, entry
    return None


def same_price(stated: float, listed: object) -> bool:
    """Given a stated price and the map's value, return whether they are the same price."""
    return isinstance(listed, int | float) and math.isclose(stated, listed, rel_tol=1e-9, abs_tol=1e-15)
