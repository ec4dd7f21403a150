"""The routing workflow file: its router is the one routing-rules.yaml gives, and `ops workflow sync` keeps it so.

The workflow itself runs on the real n8n in tests/integration/test_n8n_router.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ops.config import load_settings
from ops.errors import ConfigError
from ops.workflows import router
from ops.workflows.n8n import published, workflow_matches
from tests.conftest import REPO
from tests.unit.cli import run_ops


@pytest.fixture
def project(tmp_path: Path) -> Path:
    target = tmp_path / "project"
    (target / "workflows").mkdir(parents=True)
    for name in ("vps.env.example", "routing-rules.yaml", "litellm-config.yaml", router.WORKFLOW_FILE):
        shutil.copy2(REPO / name, target / name)
    return target


def test_the_shipped_workflow_routes_by_the_shipped_rules() -> None:
    assert router.router_drift(load_settings(REPO)) == ""


def test_a_changed_rule_is_drift_until_synced(project: Path) -> None:
    rules = project / "routing-rules.yaml"
    rules.write_text(rules.read_text().replace("min_chars: 50000", "min_chars: 40000"))
    settings = load_settings(project)
    assert "run `ops workflow sync`" in router.router_drift(settings)
    assert run_ops("workflow", "sync", "--check", "--project-dir", str(project)).returncode == 1
    assert router.sync_router(settings) is True
    assert router.router_drift(settings) == ""
    code = router.node(router.load_workflow(router.workflow_path(settings)), router.ROUTE_NODE)["parameters"]["jsCode"]
    assert '"min_chars": 40000' in code and "refuse(413" in code  # the hand-written part around the block is kept
    assert router.sync_router(settings) is False
    assert run_ops("workflow", "sync", "--check", "--project-dir", str(project)).returncode == 0


def test_a_new_model_group_is_drift_too(project: Path) -> None:
    """The workflow refuses a "model" that is not a group: the list it checks comes from litellm-config.yaml."""
    config = project / "litellm-config.yaml"
    extra = "  - model_name: cheaper\n    litellm_params: {model: x}\n  - model_name: smart "
    config.write_text(config.read_text().replace("  - model_name: smart ", extra, 1))
    settings = load_settings(project)
    assert router.router_drift(settings) != ""
    router.sync_router(settings)
    code = router.node(router.load_workflow(router.workflow_path(settings)), router.ROUTE_NODE)["parameters"]["jsCode"]
    assert '"cheaper"' in code


def test_a_workflow_without_the_generated_block_is_refused_by_name(project: Path) -> None:
    path = project / router.WORKFLOW_FILE
    workflow = json.loads(path.read_text())
    router.node(workflow, router.ROUTE_NODE)["parameters"]["jsCode"] = "return [];"
    path.write_text(json.dumps(workflow))
    with pytest.raises(ConfigError, match="has no generated block"):
        router.sync_router(load_settings(project))
    ran = run_ops("workflow", "sync", "--project-dir", str(project))
    assert ran.returncode == 2 and "has no generated block" in ran.stderr


def test_the_workflow_file_holds_no_secret_and_no_env_access() -> None:
    text = (REPO / router.WORKFLOW_FILE).read_text()
    workflow = json.loads(text)
    assert "$env" not in text and "sk-" not in text
    for node in workflow["nodes"]:
        for credential in node.get("credentials", {}).values():
            assert set(credential) == {"id", "name"}  # a reference; the value is in n8n's credential store
    webhook = router.node(workflow, router.WEBHOOK_NODE)["parameters"]
    assert (webhook["httpMethod"], webhook["path"], webhook["authentication"]) == ("POST", "litellm-route", "headerAuth")


def test_for_n8n_points_the_gateway_node_at_the_url_given() -> None:
    workflow = router.load_workflow(REPO / router.WORKFLOW_FILE)
    local = router.for_n8n(workflow, "http://127.0.0.1:4123/")
    assert router.node(local, router.GATEWAY_NODE)["parameters"]["url"] == "http://127.0.0.1:4123/v1/chat/completions"
    assert router.node(workflow, router.GATEWAY_NODE)["parameters"]["url"] == "http://litellm:4000/v1/chat/completions"


def test_the_gateway_key_is_sent_to_the_gateway_host_only() -> None:
    hook, gateway = router.credentials("s3cret", "sk-key", "http://litellm:4000")
    assert hook["data"] == {"name": "X-Webhook-Key", "value": "s3cret"}
    assert gateway["data"]["allowedDomains"] == "litellm" and gateway["data"]["token"] == "sk-key"


def test_an_exported_workflow_matches_whatever_n8n_added() -> None:
    wanted = router.load_workflow(REPO / router.WORKFLOW_FILE)
    exported = {**wanted, "versionId": "v2", "activeVersionId": "v2", "active": True, "updatedAt": "now", "shared": []}
    assert workflow_matches(exported, wanted) and published(exported)
    assert not published({**exported, "activeVersionId": "v1"})  # an older version is the live one
    changed = json.loads(json.dumps(wanted))
    router.node(changed, router.ROUTE_NODE)["parameters"]["jsCode"] += "\n// edited"
    assert not workflow_matches(exported, changed)


def test_slice_4_without_n8n_settings_fails_naming_them() -> None:
    from ops.slices import get_slice
    from ops.slices.base import Target

    checks = get_slice(4).verify(Target("http://127.0.0.1:9", "sk-x", "http://127.0.0.1:9", "pk", "sk"))
    assert [c.ok for c in checks] == [False]
    assert "N8N_DOMAIN" in checks[0].detail and "N8N_WEBHOOK_SECRET" in checks[0].detail


def test_an_unreadable_credentials_export_is_not_shown_in_the_error() -> None:
    from ops.errors import ServiceError
    from ops.workflows.n8n import _parse_export

    secret = '[{"data": {"token": "sk-decrypted-secret"}'  # cut short: not JSON
    with pytest.raises(ServiceError, match=r"printed no JSON: \(not shown: it holds decrypted credentials\)$") as raised:
        _parse_export("credentials", "c1", 0, secret, "")
    assert "sk-decrypted" not in str(raised.value) and raised.value.__cause__ is None
    with pytest.raises(ServiceError, match=r"export:workflow --id=w1 printed no JSON: 'oops'$"):
        _parse_export("workflow", "w1", 0, "oops", "")
