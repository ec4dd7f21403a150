"""Cloud Monitoring as code: the e-mail channels, uptime check and alert policies that page when the VM is down.

`ops alerts check` runs on the VM, so it cannot report the VM itself down,
frozen or out of memory. Google's side can: an uptime check on the public
LiteLLM health URL and the Ops Agent's memory and disk metrics.
``gcp_policies.yaml`` beside this module is the desired state; a plan
compares it with the project's resources (found by the user label
``aistack-key``, not by display name) and says create, update, replace or
unchanged for each; apply writes only what differs, so a second apply writes
nothing. Of several resources with one key (an interrupted apply leaves them)
one is kept and a second uptime check deleted; ``prune`` also deletes what
the file no longer defines. The real google-cloud-monitoring client does the talking: with
Application Default Credentials (the VM's service account), or, with
OPS_GCP_MONITORING_ENDPOINT, over plain gRPC to a local fake (tests).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from string import Template
from typing import Any, Protocol

import yaml

from ops.backup.gcs import short_error
from ops.config import Settings
from ops.errors import ConfigError, ServiceError
from ops.secrets import placeholder_domain

POLICIES_FILE = Path(__file__).with_name("gcp_policies.yaml")
MANAGED_BY = ("managed-by", "aistack-ops")
KEY_LABEL = "aistack-key"
CHANNEL, CHECK, POLICY = "notification channel", "uptime check", "alert policy"
KINDS = (CHANNEL, CHECK, POLICY)
# The only fields UpdateUptimeCheckConfig changes; any other difference (the host, the period, the labels)
# needs a new check (source: google-cloud-monitoring 2.32.0 types/uptime_service.py, UpdateUptimeCheckConfigRequest).
CHECK_UPDATABLE = frozenset({"display_name", "http_check", "tcp_check", "timeout", "content_matchers", "selected_regions"})
# alertPolicies and uptimeCheckConfigs writes need the monitoring (or cloud-platform) scope; the default VM
# scopes' monitoring.write only publishes metrics (source: the clients' AUTH_SCOPES, transports/base.py).
SCOPE = "https://www.googleapis.com/auth/monitoring"
CALL_TIMEOUT = 30.0
CHECK_ID = re.compile(r'check_id\s*=\s*"([^"]*)"')  # how a policy's filter names an uptime check
ROLES = (
    "the credentials need the monitoring or cloud-platform scope and the role roles/monitoring.editor "
    "(or roles/monitoring.alertPolicyEditor, notificationChannelEditor and uptimeCheckConfigEditor) on the project; "
    "docs/ALERTS.md, 'Cloud Monitoring'"
)
NO_CREDENTIALS = (
    "no Google credentials for Cloud Monitoring: on the VM its service account is used (it needs the "
    "cloud-platform scope and roles/monitoring.editor, docs/ALERTS.md); elsewhere run "
    "`gcloud auth application-default login`"
)
ACTIONS = ("create", "update", "replace", "delete", "unchanged", "orphan")
DONE = {
    "create": "created",
    "update": "updated",
    "replace": "replaced",
    "delete": "deleted",
    "unchanged": "unchanged",
    "orphan": "orphan",
}
WRITES = ("create", "update", "replace", "delete")


@dataclass(frozen=True)
class Resource:
    """One channel, uptime check or policy: its kind, its aistack-key, and its fields as the API names them."""

    kind: str
    key: str
    body: dict[str, Any]
    name: str = ""  # the server's resource name; empty for a desired resource

    @property
    def display_name(self) -> str:
        """Return the display name the body sets, or an empty string."""
        return str(self.body.get("display_name", ""))

    @property
    def id(self) -> str:
        """Return the last part of the server's name: what a policy's filter names an uptime check by."""
        return self.name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Change:
    """What a plan or an apply does to one resource; fields names the top-level fields that differ, note why."""

    kind: str
    key: str
    display_name: str
    action: str
    fields: tuple[str, ...] = ()
    name: str = ""
    note: str = ""


@dataclass(frozen=True)
class GcpPlan:
    """The changes for one project; applied says whether they were made or only planned."""

    project: str
    changes: tuple[Change, ...]
    applied: bool = False
    source: str = field(default=str(POLICIES_FILE))
    prune: bool = False

    def count(self, action: str) -> int:
        """Given an action, return how many changes have it."""
        return sum(1 for c in self.changes if c.action == action)

    @property
    def pending(self) -> bool:
        """Whether anything differs from the desired state (before an apply) or was written (after one)."""
        return any(c.action in WRITES for c in self.changes)

    def lines(self) -> list[str]:
        """Return the report a person reads: one line per resource, then a summary."""
        verb = "apply" if self.applied else "plan"
        out = [f"Cloud Monitoring, project {self.project} ({verb} of {Path(self.source).name}):"]
        for c in self.changes:
            action = DONE[c.action] if self.applied else c.action
            detail = f" ({', '.join(c.fields)})" if c.fields else ""
            if c.note:
                detail = f" ({c.name}: {c.note})"
            out.append(f"  {action:<9}  {c.kind:<20}  {c.key:<18}  {c.display_name}{detail}")
        writes = ("create", "update", "replace") + (("delete",) if self.count("delete") else ())
        counts = ", ".join(f"{self.count(a)} to {a}" for a in writes)
        if not self.pending:
            out.append(f"Nothing to change: all {self.count('unchanged')} resources match {Path(self.source).name}.")
        elif self.applied:
            done = ", ".join(f"{self.count(a)} {DONE[a]}" for a in writes)
            out.append(f"Applied: {done}, {self.count('unchanged')} unchanged.")
        else:
            command = "ops alerts gcp --apply" + (" --prune" if self.prune else "")
            out.append(f"{counts}, {self.count('unchanged')} unchanged. `{command}` makes these changes.")
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as `--json` prints it: the project, whether it was applied, the file, every change."""
        return {
            "project": self.project,
            "applied": self.applied,
            "source": self.source,
            "prune": self.prune,
            "changes": [asdict(c) | {"fields": list(c.fields)} for c in self.changes],
        }


# --- the desired state: pure functions of the file and the settings ---


def load_spec(path: Path = POLICIES_FILE) -> dict[str, Any]:
    """Given the desired-state file, return it parsed. Raise ConfigError if it is missing or not a YAML mapping."""
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the Cloud Monitoring desired state {path}: {exc}") from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("alert_policies"), list):
        raise ConfigError(f"{path} must be a mapping with email_channel, uptime_checks and alert_policies")
    return spec


def channel_key(email: str) -> str:
    """Given an address, return its channel's aistack-key (label values cannot hold @ or dots)."""
    return "email-" + hashlib.sha256(email.lower().encode()).hexdigest()[:12]


def _substitute(value: Any, variables: Mapping[str, str], where: str) -> Any:
    """Return value with ${name} replaced in every string. Raise ConfigError naming an unknown variable."""
    if isinstance(value, str):
        try:
            return Template(value).substitute(variables)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"{where}: unknown variable {exc} in {value!r} (known: {', '.join(sorted(variables))})") from None
    if isinstance(value, dict):
        return {k: _substitute(v, variables, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables, where) for v in value]
    return value


def _message_class(kind: str) -> Any:
    from google.cloud import monitoring_v3

    return {
        CHANNEL: monitoring_v3.NotificationChannel,
        CHECK: monitoring_v3.UptimeCheckConfig,
        POLICY: monitoring_v3.AlertPolicy,
    }[kind]


def to_message(kind: str, body: dict[str, Any], where: str = "") -> Any:
    """Given a resource's fields, return the client's message. Raise ConfigError naming an unknown field or value."""
    from google.protobuf import json_format

    cls = _message_class(kind)
    try:
        return cls.wrap(json_format.ParseDict(body, cls.pb()()))
    except json_format.ParseError as exc:
        raise ConfigError(f"{where or kind}: {exc}") from None


def to_body(message: Any) -> dict[str, Any]:
    """Given a client message, return its fields as a dict (proto field names, enums by name, durations as '60s')."""
    from google.protobuf import json_format

    body: dict[str, Any] = json_format.MessageToDict(type(message).pb(message), preserving_proto_field_name=True)
    return body


def _labels(key: str) -> dict[str, str]:
    return {MANAGED_BY[0]: MANAGED_BY[1], KEY_LABEL: key}


def desired_state(
    spec: dict[str, Any],
    *,
    project: str,
    emails: tuple[str, ...],
    domain: str,
    channel_names: Mapping[str, str],
    check_ids: Mapping[str, str],
    source: str = "gcp_policies.yaml",
) -> list[Resource]:
    """Given the parsed file, the settings and the names the server gave, return every desired resource.

    A channel or check not created yet stands in by a '(new KEY)' placeholder, so a plan shows the policy
    that will point at it as an update. Raise ConfigError if the file names an unknown field, enum or
    variable, two resources share a key, or a policy names an uptime check the file does not define.
    """
    base = {"project": project, "litellm_domain": domain}
    resources: list[Resource] = []
    channel_spec = spec.get("email_channel") or {}
    for email in emails:
        key = channel_key(email)
        body = _substitute(channel_spec, {**base, "email": email}, f"{source}: email_channel")
        body |= {"type": "email", "labels": {"email_address": email}, "user_labels": _labels(key), "enabled": True}
        resources.append(_canonical(CHANNEL, key, body, source))
    channels = [channel_names.get(r.key, f"projects/{project}/notificationChannels/(new {r.key})") for r in resources]
    check_keys: set[str] = set()
    for item in spec.get("uptime_checks") or []:
        key = str(item.get("key", ""))
        body = _substitute({k: v for k, v in item.items() if k != "key"}, base, f"{source}: uptime check {key}")
        body["user_labels"] = _labels(key)
        resources.append(_canonical(CHECK, key, body, source))
        check_keys.add(key)
    for item in spec["alert_policies"]:
        key = str(item.get("key", ""))
        check = item.get("uptime_check")
        variables = dict(base)
        if check is not None:
            if check not in check_keys:
                raise ConfigError(f"{source}: alert policy {key} names uptime check {check!r}, which the file does not define")
            variables["check_id"] = check_ids.get(check, f"(new {check})")
        body = _substitute({k: v for k, v in item.items() if k not in ("key", "uptime_check")}, variables, f"{source}: {key}")
        body["user_labels"] = _labels(key)
        body["notification_channels"] = list(channels)
        resources.append(_canonical(POLICY, key, body, source))
    seen: set[tuple[str, str]] = set()
    for r in resources:
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", r.key):
            raise ConfigError(f"{source}: {r.kind} key {r.key!r} must be a label value: lowercase letters, digits, - and _")
        if (r.kind, r.key) in seen:
            raise ConfigError(f"{source}: more than one {r.kind} has the key {r.key!r}")
        seen.add((r.kind, r.key))
    return resources


def _canonical(kind: str, key: str, body: dict[str, Any], source: str) -> Resource:
    """Round-trip body through the client's message: unknown fields fail here, values take the server's form."""
    return Resource(kind, key, to_body(to_message(kind, body, f"{source}: {kind} {key}")))


# --- the diff: pure ---


def _normalize_filter(text: str) -> str:
    """Given a monitoring filter, return it with the spacing outside quoted strings made uniform."""
    parts = re.split(r'("(?:[^"\\]|\\.)*")', text)
    for i in range(0, len(parts), 2):
        spaced = re.sub(r"\s+", " ", parts[i])
        parts[i] = re.sub(r"\s*(!=|<=|>=|=~|!~|=|<|>|:)\s*", r"\1", spaced)
    return "".join(parts).strip()


def _same(desired: Any, existing: Any, path: str = "") -> bool:
    """Whether existing has every value desired sets (fields the server adds, like names and records, are ignored)."""
    if isinstance(desired, dict):
        return isinstance(existing, dict) and all(
            k in existing and _same(v, existing[k], f"{path}.{k}") for k, v in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(existing, list) or len(desired) != len(existing):
            return False
        if path.endswith("notification_channels"):  # the ids matter: a name may carry the project's number
            return sorted(str(d).rsplit("/", 1)[-1] for d in desired) == sorted(str(e).rsplit("/", 1)[-1] for e in existing)
        if all(not isinstance(d, (dict, list)) for d in desired):
            return sorted(map(str, desired)) == sorted(map(str, existing))
        return all(_same(d, e, path) for d, e in zip(desired, existing, strict=True))
    if path.endswith(".filter") and isinstance(desired, str) and isinstance(existing, str):
        return _normalize_filter(desired) == _normalize_filter(existing)
    return bool(desired == existing)


def differing_fields(desired: dict[str, Any], existing: dict[str, Any]) -> tuple[str, ...]:
    """Given a desired and an existing resource's fields, return the top-level fields whose values differ."""
    return tuple(k for k, v in desired.items() if k not in existing or not _same(v, existing[k], k))


def references(body: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Given an alert policy's fields, return (kind, id) of every channel it notifies and uptime check its filters name."""
    refs = {(CHANNEL, str(n).rsplit("/", 1)[-1]) for n in body.get("notification_channels") or []}
    for condition in body.get("conditions") or []:
        for value in condition.values():
            if isinstance(value, dict) and isinstance(value.get("filter"), str):
                refs |= {(CHECK, check_id) for check_id in CHECK_ID.findall(value["filter"])}
    return refs


def choose(desired: list[Resource], existing: list[Resource]) -> dict[tuple[str, str], Resource]:
    """Given the desired and the existing managed resources, return the existing one kept for each kind and key.

    Of several with one key (an apply interrupted after creating a new uptime check leaves two): the one
    whose fields match the desired state, else the one an existing policy names, else the first listed.
    """
    wanted = {(r.kind, r.key): r for r in desired}
    named: set[tuple[str, str]] = set()
    for r in existing:
        if r.kind == POLICY:
            named |= references(r.body)

    def rank(item: tuple[int, Resource]) -> tuple[bool, bool, int]:
        i, r = item
        target = wanted.get((r.kind, r.key))
        matches = target is not None and not differing_fields(target.body, r.body)
        return (not matches, (r.kind, r.id) not in named, i)

    groups: dict[tuple[str, str], list[tuple[int, Resource]]] = {}
    for i, r in enumerate(existing):
        groups.setdefault((r.kind, r.key), []).append((i, r))
    return {k: min(items, key=rank)[1] for k, items in groups.items()}


def plan_changes(
    desired: list[Resource],
    existing: list[Resource],
    *,
    prune: bool = False,
    foreign: frozenset[tuple[str, str]] = frozenset(),
) -> list[Change]:
    """Given the desired and the existing managed resources, return one Change per resource.

    Matched by kind and aistack-key, one existing resource per key as choose() keeps it. An uptime check
    differing in a field its update cannot change is replaced. A second uptime check with a desired key
    is deleted; with prune, so is every other managed resource the file no longer defines or has a
    second of; the rest are orphans, left alone. A check or channel a policy still names after the apply
    (foreign: the (kind, id) that policies aistack-ops does not manage name) is never deleted.
    """
    kept = choose(desired, existing)
    ordered: list[Change] = []
    for r in desired:
        old = kept.get((r.kind, r.key))
        if old is None:
            ordered.append(Change(r.kind, r.key, r.display_name, "create"))
            continue
        fields = differing_fields(r.body, old.body)
        if not fields:
            action = "unchanged"
        elif r.kind == CHECK and not set(fields) <= CHECK_UPDATABLE:
            action = "replace"
        else:
            action = "update"
        ordered.append(Change(r.kind, r.key, r.display_name, action, fields, old.name))
    wanted = {(r.kind, r.key) for r in desired}
    extra = [r for r in existing if (r.kind, r.key) not in wanted or kept[(r.kind, r.key)] is not r]

    def why(r: Resource) -> str:
        return f"another {r.kind} has this key" if (r.kind, r.key) in wanted else "no longer desired"

    def deletable(r: Resource) -> bool:
        return prune or (r.kind == CHECK and (r.kind, r.key) in wanted)

    # what the policies name once the apply is done: the desired ones, the ones it leaves, the ones it does not manage
    named = set(foreign)
    for r in desired + [r for r in extra if not deletable(r)]:
        if r.kind == POLICY:
            named |= references(r.body)
    removals: list[Change] = []
    for r in extra:
        if deletable(r) and (r.kind, r.id) not in named:
            removals.append(Change(r.kind, r.key, r.display_name, "delete", name=r.name, note=why(r)))
        elif deletable(r):
            note = f"{why(r)}, but an alert policy that stays names it; left alone"
            removals.append(Change(r.kind, r.key, r.display_name, "orphan", name=r.name, note=note))
        else:
            note = f"{why(r)}; left alone, --prune deletes it"
            removals.append(Change(r.kind, r.key, r.display_name, "orphan", name=r.name, note=note))
    return ordered + removals


def managed(kind: str, body: dict[str, Any], name: str) -> Resource | None:
    """Given a resource the server listed, return it as a Resource if aistack-ops made it, else None."""
    labels = body.get("user_labels") or {}
    if labels.get(MANAGED_BY[0]) != MANAGED_BY[1] or not labels.get(KEY_LABEL):
        return None
    return Resource(kind, str(labels[KEY_LABEL]), body, name)


# --- the API ---


class MonitoringApi(Protocol):
    """The calls a plan and an apply make; every body is a dict of the API's fields."""

    def list(self, kind: str) -> list[dict[str, Any]]: ...

    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def update(self, kind: str, name: str, body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]: ...

    def delete(self, kind: str, name: str) -> None: ...


class GapicMonitoring:
    """The three google-cloud-monitoring clients for one project (ADC, or plain gRPC to endpoint)."""

    def __init__(self, project: str, endpoint: str = "") -> None:
        """Given a project id and an optional loopback host:port of a fake, make the clients.

        Raise ConfigError if no endpoint is given and Application Default Credentials are missing.
        """
        from google.auth import exceptions as auth_exceptions
        from google.cloud import monitoring_v3
        from google.cloud.monitoring_v3.services.alert_policy_service.transports import AlertPolicyServiceGrpcTransport
        from google.cloud.monitoring_v3.services.notification_channel_service.transports import (
            NotificationChannelServiceGrpcTransport,
        )
        from google.cloud.monitoring_v3.services.uptime_check_service.transports import UptimeCheckServiceGrpcTransport

        self.project = project
        self.parent = f"projects/{project}"
        if endpoint:
            import grpc  # type: ignore[import-untyped]

            # a local fake: plaintext, no credentials, and no HTTP proxy from the environment in between
            channel = grpc.insecure_channel(endpoint, options=[("grpc.enable_http_proxy", 0)])
            self._channel = channel
            self._clients: dict[str, Any] = {
                CHANNEL: monitoring_v3.NotificationChannelServiceClient(
                    transport=NotificationChannelServiceGrpcTransport(channel=channel)
                ),
                CHECK: monitoring_v3.UptimeCheckServiceClient(transport=UptimeCheckServiceGrpcTransport(channel=channel)),
                POLICY: monitoring_v3.AlertPolicyServiceClient(transport=AlertPolicyServiceGrpcTransport(channel=channel)),
            }
            return
        import google.auth

        try:
            credentials, _ = google.auth.default(scopes=[SCOPE])
        except auth_exceptions.DefaultCredentialsError as exc:
            raise ConfigError(f"{NO_CREDENTIALS} ({short_error(exc)})") from exc
        self._channel = None
        self._clients = {
            CHANNEL: monitoring_v3.NotificationChannelServiceClient(credentials=credentials),
            CHECK: monitoring_v3.UptimeCheckServiceClient(credentials=credentials),
            POLICY: monitoring_v3.AlertPolicyServiceClient(credentials=credentials),
        }

    def close(self) -> None:
        """Close the gRPC channel to a fake endpoint; the credentialed clients need no closing."""
        if self._channel is not None:
            self._channel.close()

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Given what is being done, turn the client's exceptions into one OpsError naming it and the project."""
        from google.api_core import exceptions
        from google.auth import exceptions as auth_exceptions

        try:
            yield
        except exceptions.PermissionDenied as exc:
            text = str(exc)
            if "SERVICE_DISABLED" in text or "has not been used" in text or "is disabled" in text:
                raise ConfigError(
                    f"the Cloud Monitoring API is not enabled in project {self.project}: "
                    f"gcloud services enable monitoring.googleapis.com --project {self.project}"
                ) from exc
            raise ConfigError(f"Cloud Monitoring refused to {doing} in project {self.project} (403): {ROLES}") from exc
        except exceptions.Unauthenticated as exc:
            raise ConfigError(f"Cloud Monitoring did not accept the credentials to {doing}: {ROLES}") from exc
        except exceptions.NotFound as exc:
            raise ConfigError(f"Cloud Monitoring cannot {doing}: project {self.project!r} not found (OPS_GCP_PROJECT)") from exc
        except exceptions.InvalidArgument as exc:
            raise ConfigError(f"Cloud Monitoring refused to {doing}: {short_error(exc)} (ops/alerts/gcp_policies.yaml)") from exc
        except (exceptions.GoogleAPIError, exceptions.RetryError) as exc:
            raise ServiceError(f"Cloud Monitoring could not {doing} in project {self.project}: {short_error(exc)}") from exc
        except auth_exceptions.DefaultCredentialsError as exc:
            raise ConfigError(NO_CREDENTIALS) from exc
        except auth_exceptions.GoogleAuthError as exc:
            raise ConfigError(f"the Google credentials failed to {doing}: {short_error(exc)}; {ROLES}") from exc

    def list(self, kind: str) -> list[dict[str, Any]]:
        """Given a kind, return every resource of it in the project (all pages) as a dict of fields.

        Raise ConfigError if the credentials, role, API or project are refused; ServiceError if unreachable.
        """
        client = self._clients[kind]
        with self._errors(f"list the {kind}s"):  # the pagers fetch every page
            if kind == CHANNEL:
                found = client.list_notification_channels(name=self.parent, timeout=CALL_TIMEOUT)
            elif kind == CHECK:
                found = client.list_uptime_check_configs(parent=self.parent, timeout=CALL_TIMEOUT)
            else:
                found = client.list_alert_policies(name=self.parent, timeout=CALL_TIMEOUT)
            return [to_body(m) for m in found]

    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """Given a kind and a resource's fields, create it and return the server's answer (with its name).

        Raise as list() does, or ConfigError if the server rejects a field.
        """
        client, message = self._clients[kind], to_message(kind, body)
        with self._errors(f"create {kind} {body.get('display_name')!r}"):
            if kind == CHANNEL:
                made = client.create_notification_channel(name=self.parent, notification_channel=message, timeout=CALL_TIMEOUT)
            elif kind == CHECK:
                made = client.create_uptime_check_config(parent=self.parent, uptime_check_config=message, timeout=CALL_TIMEOUT)
            else:
                made = client.create_alert_policy(name=self.parent, alert_policy=message, timeout=CALL_TIMEOUT)
        return to_body(made)

    def update(self, kind: str, name: str, body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
        """Given a resource's name, its desired fields and the top-level fields to change, update only those.

        Return the server's answer. Raise as create() does.
        """
        from google.protobuf import field_mask_pb2

        client, message = self._clients[kind], to_message(kind, {**body, "name": name})
        mask = field_mask_pb2.FieldMask(paths=list(fields))
        with self._errors(f"update {kind} {body.get('display_name')!r}"):
            if kind == CHANNEL:
                made = client.update_notification_channel(notification_channel=message, update_mask=mask, timeout=CALL_TIMEOUT)
            elif kind == CHECK:
                made = client.update_uptime_check_config(uptime_check_config=message, update_mask=mask, timeout=CALL_TIMEOUT)
            else:
                made = client.update_alert_policy(alert_policy=message, update_mask=mask, timeout=CALL_TIMEOUT)
        return to_body(made)

    def delete(self, kind: str, name: str) -> None:
        """Given a kind and a resource's name, delete it. Raise as list() does (ServiceError if a policy uses it)."""
        client = self._clients[kind]
        with self._errors(f"delete {kind} {name}"):
            if kind == CHANNEL:
                client.delete_notification_channel(name=name, timeout=CALL_TIMEOUT)
            elif kind == CHECK:
                client.delete_uptime_check_config(name=name, timeout=CALL_TIMEOUT)
            else:
                client.delete_alert_policy(name=name, timeout=CALL_TIMEOUT)


# --- plan and apply ---


def _existing(api: MonitoringApi) -> tuple[list[Resource], frozenset[tuple[str, str]]]:
    """Given the API, return the managed resources and the (kind, id) that the other alert policies name."""
    out: list[Resource] = []
    foreign: set[tuple[str, str]] = set()
    for kind in KINDS:
        for body in api.list(kind):
            found = managed(kind, body, str(body.get("name", "")))
            if found is not None:
                out.append(found)
            elif kind == POLICY:
                foreign |= references(body)
    return out, frozenset(foreign)


def _settings_inputs(settings: Settings) -> tuple[str, tuple[str, ...], str]:
    """Return (project, e-mail addresses, LiteLLM's public name). Raise ConfigError naming a missing one."""
    project = settings.gcp_project
    emails = settings.gcp_alert_emails
    domain = settings.effective_env.get("LITELLM_DOMAIN", "").strip()
    if placeholder_domain(domain):
        raise ConfigError(
            f"LITELLM_DOMAIN is a placeholder ({domain!r}): the uptime check needs the public name Caddy serves LiteLLM on"
        )
    return project, emails, domain


def _reconcile(settings: Settings, spec_path: Path, api: MonitoringApi | None, write: bool, prune: bool) -> GcpPlan:
    project, emails, domain = _settings_inputs(settings)
    spec = load_spec(spec_path)

    def wanted(names: Mapping[str, str], ids: Mapping[str, str]) -> list[Resource]:
        return desired_state(
            spec, project=project, emails=emails, domain=domain, channel_names=names, check_ids=ids, source=spec_path.name
        )

    wanted({}, {})  # the file's mistakes before any call
    owned = api is None
    client: MonitoringApi = api or GapicMonitoring(project, settings.gcp_monitoring_endpoint)
    try:
        existing, foreign = _existing(client)
        # channels' and checks' fields do not depend on names, so this keeps the ones plan_changes keeps
        kept = choose(wanted({}, {}), existing)
        names = {k: r.name for (kind, k), r in kept.items() if kind == CHANNEL}
        ids = {k: r.id for (kind, k), r in kept.items() if kind == CHECK}
        changes = plan_changes(wanted(names, ids), existing, prune=prune, foreign=foreign)
        if not write:
            return GcpPlan(project, tuple(changes), applied=False, source=str(spec_path), prune=prune)
        made: dict[tuple[str, str], str] = {}
        for kind in KINDS:  # policies last: they name the channels and the check
            desired = wanted(names, ids)
            targets = {r.key: r for r in desired if r.kind == kind}
            changes = plan_changes(desired, existing, prune=prune, foreign=foreign)
            for change in (c for c in changes if c.kind == kind):
                if change.action in ("create", "replace"):
                    name = made[(kind, change.key)] = str(client.create(kind, targets[change.key].body)["name"])
                    if kind == CHANNEL:
                        names[change.key] = name
                    elif kind == CHECK:
                        ids[change.key] = name.rsplit("/", 1)[-1]
                elif change.action == "update":
                    client.update(kind, change.name, targets[change.key].body, change.fields)
        # then deletions, policies first: Monitoring refuses to delete a check or channel a policy names
        for kind in (POLICY, CHECK, CHANNEL):
            for change in changes:
                if change.kind == kind and change.action in ("replace", "delete"):
                    client.delete(kind, change.name)
        done = [replace(c, name=made[(c.kind, c.key)]) if c.action in ("create", "replace") else c for c in changes]
        return GcpPlan(project, tuple(done), applied=True, source=str(spec_path), prune=prune)
    finally:
        if owned and isinstance(client, GapicMonitoring):
            client.close()


def plan_policies(
    settings: Settings, *, spec_path: Path = POLICIES_FILE, api: MonitoringApi | None = None, prune: bool = False
) -> GcpPlan:
    """Given the settings, return what an apply would do to the project's Cloud Monitoring resources; write nothing.

    With prune, the plan lists as deletions the managed resources the file no longer defines.

    Raise ConfigError if OPS_GCP_PROJECT, the e-mails or LITELLM_DOMAIN is missing, the desired-state file
    is wrong, or the credentials are missing or refused; ServiceError if Cloud Monitoring cannot be reached.
    """
    return _reconcile(settings, spec_path, api, write=False, prune=prune)


def apply_policies(
    settings: Settings, *, spec_path: Path = POLICIES_FILE, api: MonitoringApi | None = None, prune: bool = False
) -> GcpPlan:
    """Given the settings, create or update the resources that differ from the desired state; return what was done.

    Channels first, then the uptime check, then the policies that name them; deletions last (a replaced
    check, a second check with one key, and with prune every managed resource the file no longer defines),
    policies before the checks and channels they name. Raise as plan_policies does.
    """
    return _reconcile(settings, spec_path, api, write=True, prune=prune)
