"""Route a task to a model group by the rules in routing-rules.yaml.

Given the task text, return the first rule that matches (rules are ordered
most capable first) or the default. The same rules, as JSON, drive the n8n
routing workflow.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.config import Settings
from ops.errors import ConfigError
from ops.files import read_yaml
from ops.gateway.litellm_config import model_groups

RULES_FILE = "routing-rules.yaml"


@dataclass(frozen=True)
class Rule:
    name: str
    model: str
    reason: str
    pattern: re.Pattern[str] | None = None
    min_chars: int | None = None

    def matches(self, text: str) -> bool:
        if self.min_chars is not None and len(text) <= self.min_chars:
            return False
        return self.pattern is None or self.pattern.search(text) is not None


@dataclass(frozen=True)
class Route:
    model: str
    reason: str
    rule: str

    def to_dict(self) -> dict[str, str]:
        return {"model": self.model, "reason": self.reason, "rule": self.rule}


@dataclass(frozen=True)
class RoutingRules:
    rules: tuple[Rule, ...]
    default: Route
    raw: dict[str, Any]

    def route(self, text: str) -> Route:
        """Given a task's text, return the model group, the reason and the rule that chose it."""
        for rule in self.rules:
            if rule.matches(text):
                return Route(rule.model, rule.reason, rule.name)
        return self.default


_JS_ROUTER = """\
// Generated from routing-rules.yaml by ops (ops.gateway.routing.rules_to_js); do not edit.
const ROUTING = %s;
function routeTask(task) {
  const text = String(task ?? "");
  for (const rule of ROUTING.rules) {
    if (rule.min_chars !== null && text.length <= rule.min_chars) continue;
    if (rule.pattern !== null && !new RegExp(rule.pattern, "i").test(text)) continue;
    return { model: rule.model, reason: rule.reason, rule: rule.name };
  }
  return { model: ROUTING.default.model, reason: ROUTING.default.reason, rule: "default" };
}
"""


def rules_to_js(rules: RoutingRules) -> str:
    """Return JavaScript defining routeTask(task) with the same rules and precedence, for n8n's Code node."""
    data = {
        "rules": [
            {
                "name": r.name,
                "model": r.model,
                "reason": r.reason,
                "pattern": r.pattern.pattern if r.pattern else None,
                "min_chars": r.min_chars,
            }
            for r in rules.rules
        ],
        "default": {"model": rules.default.model, "reason": rules.default.reason},
    }
    return _JS_ROUTER % json.dumps(data, indent=2, ensure_ascii=False)


def parse_rules(data: Any, source: str = RULES_FILE, known_models: set[str] | None = None) -> RoutingRules:
    """Given the parsed YAML of the rules file, return RoutingRules.

    Raise ConfigError naming the rule and the field if a rule has no model,
    an invalid pattern, neither pattern nor min_chars, or a model that is not
    one of known_models (when given).
    """
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise ConfigError(f"{source}: expected a mapping with a 'rules' list")
    rules = []
    for index, entry in enumerate(data["rules"]):
        where = f"{source}: rule {index + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping")
        name = str(entry.get("name") or f"rule-{index + 1}")
        where = f"{source}: rule {name!r}"
        model = entry.get("model")
        if not model:
            raise ConfigError(f"{where}: has no model")
        if known_models is not None and model not in known_models:
            raise ConfigError(f"{where}: model {model!r} is not a model group of litellm-config.yaml")
        pattern = None
        if entry.get("pattern") is not None:
            try:
                pattern = re.compile(str(entry["pattern"]), re.IGNORECASE)
            except re.error as exc:
                raise ConfigError(f"{where}: pattern {entry['pattern']!r} is invalid: {exc}") from exc
        min_chars = entry.get("min_chars")
        if min_chars is not None and (isinstance(min_chars, bool) or not isinstance(min_chars, int) or min_chars < 0):
            raise ConfigError(f"{where}: min_chars must be a whole number, got {min_chars!r}")
        if pattern is None and min_chars is None:
            raise ConfigError(f"{where}: needs a pattern or min_chars")
        rules.append(Rule(name, str(model), str(entry.get("reason") or name), pattern, min_chars))
    default = data.get("default")
    if not isinstance(default, dict) or not default.get("model"):
        raise ConfigError(f"{source}: 'default' needs a model")
    if known_models is not None and default["model"] not in known_models:
        raise ConfigError(f"{source}: default model {default['model']!r} is not a model group of litellm-config.yaml")
    return RoutingRules(tuple(rules), Route(str(default["model"]), str(default.get("reason", "default")), "default"), data)


def load_rules(path: Path, known_models: set[str] | None = None) -> RoutingRules:
    """Read and parse the rules file at path. Raise ConfigError if unreadable, not YAML or invalid."""
    return parse_rules(read_yaml(path), path.name, known_models)


def route_task(settings: Settings, text: str) -> Route:
    """Route text by the project's rules, checked against litellm-config.yaml's model groups."""
    rules = load_rules(settings.routing_rules, set(model_groups(settings.litellm_config)))
    return rules.route(text)
