"""The doctor's rules, in the order they run. Add a module here to add a rule."""

from __future__ import annotations

from types import ModuleType

from ops.doctor.rules import (
    caddyfile,
    clickhouse,
    compose_schema,
    env_vars,
    events,
    gateway,
    gcs_access,
    healthchecks,
    image_contracts,
    images,
    litellm_config,
    memory,
    model_lifecycle,
    plain_compose,
    ports,
    secrets,
)

RULES: list[ModuleType] = [
    compose_schema,
    env_vars,
    secrets,
    memory,
    ports,
    images,
    image_contracts,
    healthchecks,
    clickhouse,
    litellm_config,
    model_lifecycle,
    gateway,
    events,
    gcs_access,
    caddyfile,
    plain_compose,
]
