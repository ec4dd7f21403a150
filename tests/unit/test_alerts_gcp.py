"""ops alerts gcp: the desired state and its diff as pure functions, the settings it needs, the errors it gives.

Talking to a server is tests/integration/test_alerts_gcp.py (the real client against the contract fake).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from ops.alerts.gcp import (
    CHANNEL,
    CHECK,
    POLICIES_FILE,
    POLICY,
    GapicMonitoring,
    GcpPlan,
    Resource,
    channel_key,
    choose,
    desired_state,
    differing_fields,
    load_spec,
    managed,
    plan_changes,
)
from ops.config import Settings
from ops.errors import ConfigError
from tests.unit.cli import run_ops

PROJECT = "aistack-test"
EMAILS = ("ops@aistack.dev", "oncall@aistack.dev")


def render(spec: dict[str, Any] | None = None, **overrides: Any) -> list[Resource]:
    args: dict[str, Any] = {
        "project": PROJECT,
        "emails": EMAILS,
        "domain": "llm.aistack.dev",
        "channel_names": {},
        "check_ids": {},
    }
    return desired_state(spec or load_spec(), **(args | overrides))


def by_key(resources: list[Resource]) -> dict[str, Resource]:
    return {r.key: r for r in resources}


def as_existing(resources: list[Resource]) -> list[Resource]:
    """What a server would list after creating these: names and the fields it adds."""
    out = []
    for i, r in enumerate(resources):
        body = copy.deepcopy(r.body)
        collection = {CHANNEL: "notificationChannels", CHECK: "uptimeCheckConfigs", POLICY: "alertPolicies"}[r.kind]
        name = f"projects/{PROJECT}/{collection}/{100 + i}"
        body |= {"name": name, "creation_record": {"mutate_time": "2026-01-01T00:00:00Z"}}
        if r.kind == POLICY:
            for n, condition in enumerate(body["conditions"]):
                condition["name"] = f"{name}/conditions/{n}"
        if r.kind == CHECK:
            body["checker_type"] = "STATIC_IP_CHECKERS"
        out.append(Resource(r.kind, r.key, body, name))
    return out


def test_the_shipped_file_pages_on_memory_disk_and_the_public_health_url() -> None:
    resources = render(check_ids={"litellm-health": "uptime-42"}, channel_names={channel_key(EMAILS[0]): "projects/p/x/7"})
    kinds = [(r.kind, r.key) for r in resources]
    assert kinds == [
        (CHANNEL, channel_key(EMAILS[0])),
        (CHANNEL, channel_key(EMAILS[1])),
        (CHECK, "litellm-health"),
        (POLICY, "memory"),
        (POLICY, "disk"),
        (POLICY, "uptime"),
    ]
    found = by_key(resources)
    assert found[channel_key(EMAILS[1])].body["labels"] == {"email_address": EMAILS[1]}
    check = found["litellm-health"].body
    assert check["monitored_resource"] == {"type": "uptime_url", "labels": {"host": "llm.aistack.dev", "project_id": PROJECT}}
    assert check["http_check"]["path"] == "/health/readiness" and check["http_check"]["use_ssl"] is True
    memory = found["memory"].body["conditions"][0]["condition_threshold"]
    assert '"agent.googleapis.com/memory/percent_used"' in memory["filter"] and 'state = "used"' in memory["filter"]
    assert (memory["threshold_value"], memory["duration"], memory["comparison"]) == (90, "300s", "COMPARISON_GT")
    disk = found["disk"].body["conditions"][0]["condition_threshold"]
    assert '"agent.googleapis.com/disk/percent_used"' in disk["filter"] and disk["threshold_value"] == 85
    uptime = found["uptime"].body["conditions"][0]["condition_threshold"]
    assert 'metric.label.check_id = "uptime-42"' in uptime["filter"]
    for key in ("memory", "disk", "uptime"):  # every policy e-mails every address, the new channel by placeholder
        assert found[key].body["notification_channels"] == [
            "projects/p/x/7",
            f"projects/{PROJECT}/notificationChannels/(new {channel_key(EMAILS[1])})",
        ]
        assert found[key].body["user_labels"] == {"managed-by": "aistack-ops", "aistack-key": key}


def test_an_empty_project_plans_a_create_for_every_resource() -> None:
    changes = plan_changes(render(), [])
    assert [c.action for c in changes] == ["create"] * 6
    plan = GcpPlan(PROJECT, tuple(changes))
    assert plan.pending and plan.lines()[-1].startswith("6 to create, 0 to update, 0 to replace, 0 unchanged.")


def test_what_the_server_adds_is_not_a_change() -> None:
    desired = render()
    changes = plan_changes(desired, as_existing(desired))
    assert [c.action for c in changes] == ["unchanged"] * 6
    assert GcpPlan(PROJECT, tuple(changes), applied=True).lines()[-1] == (
        "Nothing to change: all 6 resources match gcp_policies.yaml."
    )


def test_a_changed_threshold_is_one_update_of_the_conditions() -> None:
    existing = as_existing(render())
    spec = load_spec()
    spec["alert_policies"][0]["conditions"][0]["condition_threshold"]["threshold_value"] = 80
    changes = [c for c in plan_changes(render(spec), existing) if c.action != "unchanged"]
    assert [(c.action, c.key, c.fields) for c in changes] == [("update", "memory", ("conditions",))]
    assert changes[0].name == existing[3].name


def test_filter_spacing_and_the_project_number_in_a_channel_name_are_not_changes() -> None:
    desired = by_key(render())["memory"].body
    existing = copy.deepcopy(desired)
    threshold = existing["conditions"][0]["condition_threshold"]
    threshold["filter"] = threshold["filter"].replace(" = ", "=").replace(" AND ", "  AND\n")
    existing["notification_channels"] = [c.replace(PROJECT, "123456789") for c in reversed(desired["notification_channels"])]
    assert differing_fields(desired, existing) == ()
    threshold["filter"] = threshold["filter"].replace('"used"', '"used "')  # inside quotes, spacing matters
    assert differing_fields(desired, existing) == ("conditions",)


def test_an_uptime_check_on_a_new_host_is_replaced_and_a_new_timeout_updated() -> None:
    existing = as_existing(render())
    moved = plan_changes(render(domain="api.aistack.dev"), existing)
    check = next(c for c in moved if c.kind == CHECK)
    assert (check.action, check.fields) == ("replace", ("display_name", "monitored_resource"))
    spec = load_spec()
    spec["uptime_checks"][0]["timeout"] = "20s"
    check = next(c for c in plan_changes(render(spec), existing) if c.kind == CHECK)
    assert (check.action, check.fields) == ("update", ("timeout",))


def test_only_labelled_resources_are_managed_and_one_no_longer_desired_is_an_orphan() -> None:
    assert managed(POLICY, {"name": "p/1", "display_name": "made by hand"}, "p/1") is None
    assert managed(POLICY, {"user_labels": {"aistack-key": "memory"}}, "p/2") is None  # not ours without managed-by
    existing = as_existing(render())
    changes = plan_changes(render(emails=EMAILS[:1]), existing)
    orphan = [c for c in changes if c.action == "orphan"]
    assert [(c.kind, c.key, c.name) for c in orphan] == [(CHANNEL, channel_key(EMAILS[1]), existing[1].name)]
    assert {c.key for c in changes if c.action == "update"} == {"memory", "disk", "uptime"}  # fewer channels
    assert "left alone" in "\n".join(GcpPlan(PROJECT, tuple(changes)).lines())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["alert_policies"][1]["conditions"][0]["condition_threshold"].update(threshhold_value=1), "threshhold_value"),
        (lambda s: s["alert_policies"][1].update(combiner="EITHER"), "EITHER"),
        (lambda s: s["alert_policies"][1].update(display_name="disk on ${vm}"), "unknown variable 'vm'"),
        (lambda s: s["alert_policies"][2].update(uptime_check="gateway"), "names uptime check 'gateway'"),
        (lambda s: s["alert_policies"][1].update(key="memory"), "more than one alert policy has the key 'memory'"),
        (lambda s: s["alert_policies"][1].update(key="Disk!"), "must be a label value"),
    ],
)
def test_a_mistake_in_the_desired_state_is_named(edit: Any, message: str) -> None:
    spec = load_spec()
    edit(spec)
    with pytest.raises(ConfigError, match=re.escape(message)):
        render(spec)


def test_an_unreadable_desired_state_file_is_a_config_error(tmp_path: Path) -> None:
    broken = tmp_path / "gcp_policies.yaml"
    broken.write_text("alert_policies: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read the Cloud Monitoring desired state"):
        load_spec(broken)
    broken.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_spec(broken)


def settings(**env: str) -> Settings:
    return Settings(project_dir=POLICIES_FILE.parent, env=env)


def test_the_project_is_required_and_checked() -> None:
    with pytest.raises(ConfigError, match="OPS_GCP_PROJECT is empty"):
        _ = settings().gcp_project
    with pytest.raises(ConfigError, match="OPS_GCP_PROJECT 'My_Project' is not a project id"):
        _ = settings(OPS_GCP_PROJECT="My_Project").gcp_project
    assert settings(OPS_GCP_PROJECT="aistack-prod-1").gcp_project == "aistack-prod-1"


def test_the_emails_fall_back_to_the_alert_recipients_then_the_acme_address() -> None:
    assert settings(OPS_GCP_ALERT_EMAILS="a@x.dev, b@x.dev,a@x.dev").gcp_alert_emails == ("a@x.dev", "b@x.dev")
    assert settings(OPS_SMTP_TO="c@x.dev", ACME_EMAIL="d@x.dev").gcp_alert_emails == ("c@x.dev",)
    assert settings(ACME_EMAIL="d@x.dev").gcp_alert_emails == ("d@x.dev",)
    with pytest.raises(ConfigError, match=re.escape("ACME_EMAIL holds the placeholder 'admin@example.com'")):
        _ = settings(ACME_EMAIL="admin@example.com").gcp_alert_emails
    with pytest.raises(ConfigError, match="OPS_GCP_ALERT_EMAILS must be an e-mail address"):
        _ = settings(OPS_GCP_ALERT_EMAILS="ops-at-x.dev").gcp_alert_emails
    with pytest.raises(ConfigError, match="OPS_GCP_ALERT_EMAILS is empty"):
        _ = settings().gcp_alert_emails


def test_no_google_credentials_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="no Google credentials for Cloud Monitoring"):
        GapicMonitoring(PROJECT)


def filled(project: Path, **env: str) -> Path:
    lines = {"LITELLM_DOMAIN": "llm.aistack.dev", "OPS_GCP_ALERT_EMAILS": "ops@aistack.dev", **env}
    (project / "vps.env").write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return project


def test_the_cli_names_a_missing_project_or_credentials_in_one_line(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("OPS_GCP_PROJECT", "OPS_GCP_ALERT_EMAILS", "OPS_GCP_MONITORING_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    ran = run_ops("alerts", "gcp", "--plan", "--project-dir", str(filled(project)))
    assert ran.returncode != 0 and "OPS_GCP_PROJECT is empty" in ran.stderr and "Traceback" not in ran.stderr
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    ran = run_ops("alerts", "gcp", "--apply", "--project-dir", str(filled(project, OPS_GCP_PROJECT=PROJECT)))
    assert ran.returncode != 0 and "no Google credentials for Cloud Monitoring" in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1
    placeholder = filled(project, OPS_GCP_PROJECT=PROJECT, LITELLM_DOMAIN="llm.example.com")
    ran = run_ops("alerts", "gcp", "--project-dir", str(placeholder))
    assert ran.returncode != 0 and "LITELLM_DOMAIN is a placeholder" in ran.stderr


def second_check(domain: str, number: int, **changes: Any) -> Resource:
    """An uptime check with the key litellm-health for domain, as the server lists it under id number."""
    body = copy.deepcopy(by_key(render(domain=domain))["litellm-health"].body) | changes
    name = f"projects/{PROJECT}/uptimeCheckConfigs/{number}"
    return Resource(CHECK, "litellm-health", body | {"name": name}, name)


def test_of_two_checks_with_one_key_the_one_matching_the_file_is_kept_and_the_other_deleted() -> None:
    # an apply moving to a new domain made the new check (200), then failed before re-pointing the policy
    existing = [*as_existing(render(check_ids={"litellm-health": "102"})), second_check("api.aistack.dev", 200)]
    desired = render(domain="api.aistack.dev", check_ids={"litellm-health": "200"})
    changes = [(c.action, c.kind, c.key, c.name) for c in plan_changes(desired, existing) if c.action != "unchanged"]
    assert changes == [
        ("update", POLICY, "uptime", existing[5].name),
        ("delete", CHECK, "litellm-health", existing[2].name),
    ]
    assert choose(desired, existing)[(CHECK, "litellm-health")].name.endswith("/200")


def test_when_no_check_with_the_key_matches_the_one_a_policy_names_is_kept() -> None:
    policies = [r for r in as_existing(render(check_ids={"litellm-health": "300"})) if r.kind != CHECK]
    existing = [second_check("llm.aistack.dev", 299, timeout="5s"), second_check("llm.aistack.dev", 300, timeout="5s")]
    changes = plan_changes(render(check_ids={"litellm-health": "300"}), existing + policies)
    check = next(c for c in changes if c.kind == CHECK and c.action != "delete")
    assert (check.action, check.fields, check.name) == ("update", ("timeout",), existing[1].name)
    assert [(c.action, c.name) for c in changes if c.action == "delete"] == [("delete", existing[0].name)]


def test_a_second_check_a_policy_not_ours_names_is_left_alone() -> None:
    existing = [*as_existing(render(check_ids={"litellm-health": "102"})), second_check("llm.aistack.dev", 200)]
    changes = plan_changes(render(check_ids={"litellm-health": "102"}), existing, foreign=frozenset({(CHECK, "200")}))
    (extra,) = [c for c in changes if c.name.endswith("/200")]
    assert extra.action == "orphan" and "names it; left alone" in extra.note
    assert not GcpPlan(PROJECT, tuple(changes)).pending


def test_prune_deletes_what_the_file_no_longer_defines_and_without_it_says_so() -> None:
    existing = as_existing(render(check_ids={"litellm-health": "102"}))
    spec = load_spec()
    spec["uptime_checks"], spec["alert_policies"] = [], spec["alert_policies"][:2]  # the uptime check dropped
    kept = [(c.action, c.key) for c in plan_changes(render(spec), existing) if c.action != "unchanged"]
    assert kept == [("orphan", "litellm-health"), ("orphan", "uptime")]
    pruned = plan_changes(render(spec), existing, prune=True)
    assert [(c.action, c.key) for c in pruned if c.action != "unchanged"] == [("delete", "litellm-health"), ("delete", "uptime")]
    plan = GcpPlan(PROJECT, tuple(pruned), prune=True)
    assert plan.lines()[-1] == (
        "0 to create, 0 to update, 0 to replace, 2 to delete, 4 unchanged. `ops alerts gcp --apply --prune` makes these changes."
    )


@pytest.mark.parametrize("endpoint", ["127.0.0.1:8085", "localhost:1", "[::1]:65535", ""])
def test_the_monitoring_endpoint_is_a_loopback_port_or_empty(endpoint: str) -> None:
    assert settings(OPS_GCP_MONITORING_ENDPOINT=endpoint).gcp_monitoring_endpoint == endpoint


@pytest.mark.parametrize(
    "endpoint",
    ["monitoring.example.net:443", "10.0.0.5:8085", "127.0.0.1", "localhost:http", "[::1]:70000", "127.0.0.1.evil.dev:1"],
)
def test_a_monitoring_endpoint_off_this_machine_is_refused_in_one_line(endpoint: str) -> None:
    with pytest.raises(
        ConfigError, match=re.escape(f"OPS_GCP_MONITORING_ENDPOINT {endpoint!r} must be 127.0.0.1:PORT")
    ) as raised:
        _ = settings(OPS_GCP_MONITORING_ENDPOINT=endpoint).gcp_monitoring_endpoint
    assert "\n" not in str(raised.value)
