"""ops alerts gcp against Cloud Monitoring's contract fake: the real google-cloud-monitoring client over gRPC.

The fake (tests/fakes/cloud_monitoring.py) counts every write, so idempotence is a count: a second apply
writes nothing. One fake serves the module; each test starts from an empty project.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
import yaml

from ops.alerts.gcp import (
    CHANNEL,
    CHECK,
    POLICIES_FILE,
    POLICY,
    GapicMonitoring,
    GcpPlan,
    apply_policies,
    channel_key,
    plan_policies,
)
from ops.config import Settings
from ops.errors import ConfigError, ServiceError
from tests.fakes.cloud_monitoring import CloudMonitoringFake

pytestmark = pytest.mark.integration

PROJECT = "aistack-test"
EMAIL = "ops@aistack.dev"


@pytest.fixture(scope="module")
def server() -> Iterator[CloudMonitoringFake]:
    with CloudMonitoringFake(PROJECT) as fake:
        yield fake


@pytest.fixture
def fake(server: CloudMonitoringFake) -> CloudMonitoringFake:
    server.reset()
    return server


def settings(fake: CloudMonitoringFake, **env: str) -> Settings:
    values = {
        "OPS_GCP_PROJECT": PROJECT,
        "OPS_GCP_ALERT_EMAILS": EMAIL,
        "LITELLM_DOMAIN": "llm.aistack.dev",
        "OPS_GCP_MONITORING_ENDPOINT": fake.endpoint,
    }
    return Settings(project_dir=POLICIES_FILE.parent, env=values | env)


def actions(plan: GcpPlan) -> list[tuple[str, str, str]]:
    return [(c.action, c.kind, c.key) for c in plan.changes]


def test_a_plan_on_an_empty_project_lists_creates_and_writes_nothing(fake: CloudMonitoringFake) -> None:
    plan = plan_policies(settings(fake))
    assert actions(plan) == [
        ("create", CHANNEL, channel_key(EMAIL)),
        ("create", CHECK, "litellm-health"),
        ("create", POLICY, "memory"),
        ("create", POLICY, "disk"),
        ("create", POLICY, "uptime"),
    ]
    assert fake.writes == []
    assert plan.lines()[-1].startswith("5 to create, 0 to update, 0 to replace, 0 unchanged.")


def test_apply_creates_then_plan_shows_all_unchanged_and_a_second_apply_writes_nothing(fake: CloudMonitoringFake) -> None:
    applied = apply_policies(settings(fake))
    assert [a for a, _, _ in actions(applied)] == ["create"] * 5
    assert len(fake.writes) == 5
    (check,) = fake.items("check")
    (uptime,) = [p for p in fake.items("policy") if p.user_labels["aistack-key"] == "uptime"]
    assert f'metric.label.check_id = "{check.name.rsplit("/", 1)[-1]}"' in uptime.conditions[0].condition_threshold.filter
    assert list(uptime.notification_channels) == [fake.items("channel")[0].name]
    assert [a for a, _, _ in actions(plan_policies(settings(fake)))] == ["unchanged"] * 5
    again = apply_policies(settings(fake))
    assert len(fake.writes) == 5
    assert not again.pending and again.lines()[-1] == "Nothing to change: all 5 resources match gcp_policies.yaml."


def test_a_changed_threshold_plans_one_update_and_apply_writes_only_it(fake: CloudMonitoringFake, tmp_path: Path) -> None:
    apply_policies(settings(fake))
    spec = yaml.safe_load(POLICIES_FILE.read_text())
    spec["alert_policies"][1]["conditions"][0]["condition_threshold"]["threshold_value"] = 80
    edited = tmp_path / "gcp_policies.yaml"
    edited.write_text(yaml.safe_dump(spec))
    plan = plan_policies(settings(fake), spec_path=edited)
    assert [(c.action, c.key, c.fields) for c in plan.changes if c.action != "unchanged"] == [("update", "disk", ("conditions",))]
    writes = len(fake.writes)
    apply_policies(settings(fake), spec_path=edited)
    (disk,) = [p for p in fake.items("policy") if p.user_labels["aistack-key"] == "disk"]
    assert fake.writes[writes:] == [("update policy", disk.name)]
    assert disk.conditions[0].condition_threshold.threshold_value == 80
    assert not apply_policies(settings(fake), spec_path=edited).pending


def test_a_new_domain_replaces_the_uptime_check_and_repoints_its_policy(fake: CloudMonitoringFake) -> None:
    apply_policies(settings(fake))
    (old,) = fake.items("check")
    moved = settings(fake, LITELLM_DOMAIN="api.aistack.dev")
    plan = plan_policies(moved)
    assert [(a, k) for a, _, k in actions(plan) if a != "unchanged"] == [("replace", "litellm-health"), ("update", "uptime")]
    apply_policies(moved)  # the fake refuses to delete a check a policy still names: the order is checked
    (new,) = fake.items("check")
    assert new.monitored_resource.labels["host"] == "api.aistack.dev" and new.name != old.name
    assert [w[0] for w in fake.writes[5:]] == ["create check", "update policy", "delete check"]
    assert not apply_policies(moved).pending


def test_a_second_address_gets_a_channel_every_policy_names_and_a_dropped_one_is_left_alone(fake: CloudMonitoringFake) -> None:
    apply_policies(settings(fake))
    two = settings(fake, OPS_GCP_ALERT_EMAILS=f"{EMAIL},oncall@aistack.dev")
    assert [(a, k) for a, _, k in actions(apply_policies(two)) if a != "unchanged"] == [
        ("create", channel_key("oncall@aistack.dev")),
        ("update", "memory"),
        ("update", "disk"),
        ("update", "uptime"),
    ]
    assert all(len(p.notification_channels) == 2 for p in fake.items("policy"))
    back = apply_policies(settings(fake, OPS_GCP_ALERT_EMAILS="oncall@aistack.dev"))
    assert ("orphan", CHANNEL, channel_key(EMAIL)) in actions(back)
    assert len(fake.items("channel")) == 2  # listed, not deleted
    assert all(len(p.notification_channels) == 1 for p in fake.items("policy"))


def test_resources_made_by_hand_are_neither_listed_nor_touched(fake: CloudMonitoringFake) -> None:
    from google.cloud import monitoring_v3
    from google.cloud.monitoring_v3.services.notification_channel_service.transports import (
        NotificationChannelServiceGrpcTransport,
    )

    channel = grpc.insecure_channel(fake.endpoint, options=[("grpc.enable_http_proxy", 0)])
    client = monitoring_v3.NotificationChannelServiceClient(transport=NotificationChannelServiceGrpcTransport(channel=channel))
    mine = monitoring_v3.NotificationChannel(
        type_="email", display_name="aistack: ops@aistack.dev", labels={"email_address": EMAIL}
    )
    client.create_notification_channel(name=f"projects/{PROJECT}", notification_channel=mine)
    channel.close()
    applied = apply_policies(settings(fake))
    assert len(applied.changes) == 5 and len(fake.items("channel")) == 2


@pytest.mark.parametrize(
    ("code", "details", "message"),
    [
        (grpc.StatusCode.PERMISSION_DENIED, "Permission monitoring.alertPolicies.list denied", "roles/monitoring.editor"),
        (
            grpc.StatusCode.PERMISSION_DENIED,
            "Cloud Monitoring API has not been used in project aistack-test before or it is disabled. SERVICE_DISABLED",
            "gcloud services enable monitoring.googleapis.com --project aistack-test",
        ),
        (grpc.StatusCode.UNAUTHENTICATED, "Request had invalid authentication credentials", "did not accept the credentials"),
    ],
)
def test_a_refusal_is_one_sentence_saying_what_to_do(fake: CloudMonitoringFake, code: object, details: str, message: str) -> None:
    fake.refuse(code, details)
    with pytest.raises(ConfigError, match=message) as raised:
        plan_policies(settings(fake))
    assert "\n" not in str(raised.value)


def test_a_project_the_server_does_not_know_is_named(fake: CloudMonitoringFake) -> None:
    with pytest.raises(ConfigError, match="project 'other-project' not found"):
        plan_policies(settings(fake, OPS_GCP_PROJECT="other-project"))


def test_the_command_applies_then_says_nothing_changes(fake: CloudMonitoringFake, project: Path) -> None:
    (project / "vps.env").write_text(f"LITELLM_DOMAIN=llm.aistack.dev\nOPS_GCP_ALERT_EMAILS={EMAIL}\n")
    env = {**os.environ, "OPS_GCP_PROJECT": PROJECT, "OPS_GCP_MONITORING_ENDPOINT": fake.endpoint}

    def ops(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "ops.cli", "alerts", "gcp", *args, "--project-dir", str(project)]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    first = ops("--apply")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("  created  ") == 5 and "Applied: 5 created, 0 updated, 0 replaced, 0 unchanged." in first.stdout
    second = ops("--apply")
    assert second.returncode == 0 and "Nothing to change: all 5 resources match gcp_policies.yaml." in second.stdout
    assert len(fake.writes) == 5
    (env["OPS_GCP_ALERT_EMAILS"], env["OPS_SMTP_TO"]) = ("", "oncall@aistack.dev")  # vps.env's address dropped
    (project / "vps.env").write_text("LITELLM_DOMAIN=llm.aistack.dev\n")
    planned = ops("--plan", "--prune")
    assert planned.returncode == 0 and "  delete     notification channel" in planned.stdout, planned.stderr
    assert len(fake.writes) == 5


class FailingPolicyUpdate:
    """The real client, except that updating an alert policy fails: an apply interrupted halfway."""

    def __init__(self, fake: CloudMonitoringFake) -> None:
        self.api = GapicMonitoring(PROJECT, fake.endpoint)

    def list(self, kind: str) -> list[dict[str, Any]]:
        return self.api.list(kind)

    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.api.create(kind, body)

    def update(self, kind: str, name: str, body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
        if kind == POLICY:
            raise ServiceError("Cloud Monitoring could not update alert policy (the connection dropped)")
        return self.api.update(kind, name, body, fields)

    def delete(self, kind: str, name: str) -> None:
        self.api.delete(kind, name)


def test_an_apply_interrupted_mid_domain_change_converges_to_one_check(fake: CloudMonitoringFake) -> None:
    apply_policies(settings(fake))
    moved = settings(fake, LITELLM_DOMAIN="api.aistack.dev")
    broken = FailingPolicyUpdate(fake)
    with pytest.raises(ServiceError, match="connection dropped"):
        apply_policies(moved, api=broken)
    broken.api.close()
    assert len(fake.items("check")) == 2  # the new check made, the policy still on the old one
    plan = plan_policies(moved)
    assert [(a, k) for a, _, k in actions(plan) if a != "unchanged"] == [("update", "uptime"), ("delete", "litellm-health")]
    apply_policies(moved)
    (check,) = fake.items("check")
    assert check.monitored_resource.labels["host"] == "api.aistack.dev"
    (uptime,) = [p for p in fake.items("policy") if p.user_labels["aistack-key"] == "uptime"]
    assert f'"{check.name.rsplit("/", 1)[-1]}"' in uptime.conditions[0].condition_threshold.filter
    writes = len(fake.writes)
    again = apply_policies(moved)
    assert fake.writes[writes:] == [] and not again.pending


def managed_channel(fake: CloudMonitoringFake, email: str) -> str:
    """Create an e-mail channel labelled as aistack-ops's, as a retried create leaves one; return its name."""
    api = GapicMonitoring(PROJECT, fake.endpoint)
    labels = {"managed-by": "aistack-ops", "aistack-key": channel_key(email)}
    made = api.create(
        CHANNEL, {"type": "email", "display_name": f"aistack: {email}", "labels": {"email_address": email}, "user_labels": labels}
    )
    api.close()
    return str(made["name"])


def test_a_second_channel_with_the_same_key_changes_no_policy(fake: CloudMonitoringFake) -> None:
    apply_policies(settings(fake))
    (first,) = fake.items("channel")
    duplicate = managed_channel(fake, EMAIL)
    writes = len(fake.writes)
    applied = apply_policies(settings(fake))
    assert fake.writes[writes:] == [] and not applied.pending
    assert ("orphan", CHANNEL, channel_key(EMAIL)) in actions(applied)
    assert all(list(p.notification_channels) == [first.name] for p in fake.items("policy"))
    pruned = apply_policies(settings(fake), prune=True)
    assert fake.writes[writes:] == [("delete channel", duplicate)] and pruned.count("delete") == 1
    assert not apply_policies(settings(fake), prune=True).pending


def test_prune_deletes_what_the_file_no_longer_defines_after_listing_it(fake: CloudMonitoringFake, tmp_path: Path) -> None:
    apply_policies(settings(fake))
    spec = yaml.safe_load(POLICIES_FILE.read_text())
    spec["alert_policies"][1]["key"] = "disk-full"  # a renamed key: without --prune, two policies page
    renamed = tmp_path / "gcp_policies.yaml"
    renamed.write_text(yaml.safe_dump(spec))
    kept = apply_policies(settings(fake), spec_path=renamed)
    assert ("orphan", POLICY, "disk") in actions(kept) and len(fake.items("policy")) == 4
    assert "--prune deletes it" in "\n".join(kept.lines())
    writes = len(fake.writes)
    plan = plan_policies(settings(fake), spec_path=renamed, prune=True)
    assert [(a, k) for a, _, k in actions(plan) if a != "unchanged"] == [("delete", "disk")]
    assert fake.writes[writes:] == [] and "1 to delete" in plan.lines()[-1] and "--apply --prune`" in plan.lines()[-1]
    (old,) = [p for p in fake.items("policy") if p.user_labels["aistack-key"] == "disk"]
    pruned = apply_policies(settings(fake), spec_path=renamed, prune=True)
    assert fake.writes[writes:] == [("delete policy", old.name)] and "1 deleted" in pruned.lines()[-1]
    assert sorted(p.user_labels["aistack-key"] for p in fake.items("policy")) == ["disk-full", "memory", "uptime"]


def test_prune_deletes_a_dropped_policy_before_the_check_it_names(fake: CloudMonitoringFake, tmp_path: Path) -> None:
    apply_policies(settings(fake))
    spec = yaml.safe_load(POLICIES_FILE.read_text())
    spec["uptime_checks"], spec["alert_policies"] = [], spec["alert_policies"][:2]
    dropped = tmp_path / "gcp_policies.yaml"
    dropped.write_text(yaml.safe_dump(spec))
    writes = len(fake.writes)
    apply_policies(settings(fake), spec_path=dropped, prune=True)  # the fake refuses to delete a check a policy names
    assert [w for w, _ in fake.writes[writes:]] == ["delete policy", "delete check"]
    assert fake.items("check") == [] and len(fake.items("policy")) == 2
