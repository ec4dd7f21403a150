"""The routing workflow (workflows/litellm-router.json): its generated router, and its form for one n8n.

The file is an n8n workflow export, edited in n8n's editor or by hand. One
part of it is generated: the block of its "Route task" Code node between
BEGIN and END, which is ``rules_to_js`` of routing-rules.yaml plus the model
groups of litellm-config.yaml, so the workflow routes exactly like
``ops route``. ``sync_router`` rewrites that block; ``router_drift`` says
whether the file is behind the rules (a unit test and ``ops workflow sync
--check`` fail then).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ops.config import Settings
from ops.errors import ConfigError
from ops.files import read_json
from ops.gateway.litellm_config import model_groups
from ops.gateway.routing import load_rules, rules_to_js

WORKFLOW_FILE = "workflows/litellm-router.json"
WORKFLOW_ID = "aistackLlmRouter"  # fixed: the import updates this workflow instead of adding one each time
ROUTE_NODE = "Route task"
GATEWAY_NODE = "Call LiteLLM"
WEBHOOK_NODE = "Webhook"
WEBHOOK_PATH = "litellm-route"
WEBHOOK_HEADER = "X-Webhook-Key"
# the two credentials the workflow names by id (n8n resolves a node's credential by id)
WEBHOOK_CREDENTIAL = {"id": "aistackHookAuth1", "name": "aistack router webhook key", "type": "httpHeaderAuth"}
GATEWAY_CREDENTIAL = {"id": "aistackGatewayK1", "name": "aistack LiteLLM key", "type": "httpBearerAuth"}
DEFAULT_GATEWAY_URL = "http://litellm:4000"  # the gateway as the n8n container reaches it (compose service name)
BEGIN = "// BEGIN generated from routing-rules.yaml and litellm-config.yaml by `ops workflow sync`; do not edit"
END = "// END generated"


def generated_block(settings: Settings) -> str:
    """Given the project, return the router block the Code node must hold (markers included).

    Raise ConfigError if routing-rules.yaml or litellm-config.yaml is unreadable or invalid.
    """
    groups = model_groups(settings.litellm_config)
    rules = load_rules(settings.routing_rules, set(groups))
    return f"{BEGIN}\n{rules_to_js(rules)}const MODEL_GROUPS = {json.dumps(sorted(groups))};\n{END}"


def workflow_path(settings: Settings) -> Path:
    return settings.project_dir / WORKFLOW_FILE


def load_workflow(path: Path) -> dict[str, Any]:
    """Given the workflow file, return it parsed. Raise ConfigError if it is unreadable or not a workflow."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list) or not isinstance(data.get("connections"), dict):
        raise ConfigError(f"{path.name}: not an n8n workflow export (it needs 'nodes' and 'connections')")
    return data


def node(workflow: dict[str, Any], name: str) -> dict[str, Any]:
    """Given a workflow and a node's name, return the node. Raise ConfigError if there is none."""
    for entry in workflow["nodes"]:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    raise ConfigError(f"{WORKFLOW_FILE}: no node named {name!r}")


def _split(code: str) -> tuple[str, str, str]:
    """Given the Code node's JavaScript, return (before, block, after). Raise ConfigError without both markers."""
    start, end = code.find(BEGIN), code.find(END)
    if start < 0 or end < start:
        raise ConfigError(f"{WORKFLOW_FILE}: the {ROUTE_NODE!r} node has no generated block ({BEGIN!r} ... {END!r})")
    return code[:start], code[start : end + len(END)], code[end + len(END) :]


def router_drift(settings: Settings) -> str:
    """Return "" if the workflow's router block matches the rules, else one sentence saying what differs.

    Raise ConfigError if the workflow, the rules or the LiteLLM config cannot be read.
    """
    code = node(load_workflow(workflow_path(settings)), ROUTE_NODE)["parameters"]["jsCode"]
    _, block, _ = _split(code)
    if block != generated_block(settings):
        return (
            f"{WORKFLOW_FILE}: the {ROUTE_NODE!r} node's router is not the one routing-rules.yaml and "
            "litellm-config.yaml give; run `ops workflow sync`"
        )
    return ""


def sync_router(settings: Settings) -> bool:
    """Rewrite the workflow's router block from the rules; return True if the file changed.

    Raise ConfigError if the workflow, the rules or the LiteLLM config cannot be read.
    """
    path = workflow_path(settings)
    workflow = load_workflow(path)
    route = node(workflow, ROUTE_NODE)
    before, block, after = _split(route["parameters"]["jsCode"])
    wanted = generated_block(settings)
    if block == wanted:
        return False
    route["parameters"]["jsCode"] = before + wanted + after
    path.write_text(json.dumps(workflow, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def for_n8n(workflow: dict[str, Any], gateway_url: str) -> dict[str, Any]:
    """Given the workflow file's content and the gateway's URL as n8n reaches it, return the workflow to import."""
    out = copy.deepcopy(workflow)
    node(out, GATEWAY_NODE)["parameters"]["url"] = gateway_url.rstrip("/") + "/v1/chat/completions"
    return out


def credentials(webhook_secret: str, gateway_key: str, gateway_url: str) -> list[dict[str, Any]]:
    """Return the workflow's two n8n credentials, for `n8n import:credentials` (which encrypts them).

    The webhook's header auth (WEBHOOK_HEADER: webhook_secret), and the gateway's bearer key, which n8n
    sends to the gateway's host only (the credential's allowed domains; source: n8n 2.40.7
    n8n-workflow credential-domain-restrictions.js, allowedHttpRequestDomains / allowedDomains).
    """
    host = urlsplit(gateway_url).hostname or ""
    return [
        {**WEBHOOK_CREDENTIAL, "data": {"name": WEBHOOK_HEADER, "value": webhook_secret}},
        {
            **GATEWAY_CREDENTIAL,
            "data": {"token": gateway_key, "allowedHttpRequestDomains": "domains", "allowedDomains": host},
        },
    ]
