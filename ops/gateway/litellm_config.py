"""Read litellm-config.yaml: the model groups clients may ask for."""

from __future__ import annotations

from pathlib import Path

import yaml

from ops.errors import ConfigError


def model_groups(config: Path) -> list[str]:
    """Given litellm-config.yaml, return its model group names in order. Raise ConfigError if malformed."""
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        return [str(entry["model_name"]) for entry in data["model_list"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the model groups of {config}: {exc}") from exc
