"""Reading the project's structured files (YAML, JSON) with errors that name the file and the problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ops.errors import ConfigError


def read_text(path: Path, what: str | None = None) -> str:
    """Given a path, return its text. Raise ConfigError naming it (or `what`) if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what or path}: {exc.strerror}") from exc


def parse_yaml(text: str, name: str) -> Any:
    """Given YAML text from the file called name, return it parsed. Raise ConfigError if it is not valid YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name} is not valid YAML: {exc}") from exc


def read_yaml(path: Path, what: str | None = None) -> Any:
    """Given a YAML file, return it parsed. Raise ConfigError if it is unreadable or not valid YAML."""
    return parse_yaml(read_text(path, what), path.name)


def read_json(path: Path, what: str | None = None) -> Any:
    """Given a JSON file, return it parsed. Raise ConfigError if it is unreadable or not valid JSON."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what or path} is not valid JSON: {exc}") from exc
