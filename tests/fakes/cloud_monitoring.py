"""A contract fake of Cloud Monitoring API v3: notification channels, uptime checks and alert policies.

A real gRPC server on a loopback port speaking the protobuf messages of the
google.monitoring.v3 services (the request and response classes of
google-cloud-monitoring 2.32.0, which the real client serializes), so
``ops alerts gcp`` runs the real client over plain gRPC against it
(OPS_GCP_MONITORING_ENDPOINT). Why gRPC: google-cloud-monitoring ships no
REST transport (services/*/transports has grpc and grpc_asyncio only).

Methods: List, Create, Update and Delete of NotificationChannelService,
UptimeCheckService and AlertPolicyService; every write is counted in
``writes`` as (method, resource name).

Checks, as the API documents them (the docstrings of types/alert.py,
alert_service.py, uptime.py, uptime_service.py and notification_service.py):
the parent is ``projects/<the fake's project>`` (else NOT_FOUND); create
without ``name`` and with a display name; user label keys and values of
lowercase letters, digits, ``-`` and ``_``, keys starting with a letter, 63
characters at most; e-mail channels carry ``labels.email_address``; an
uptime check has a timeout of 1-60 s, a period of 60, 300, 600 or 900 s
(60 s when unset), an ``uptime_url`` resource with labels host and
project_id, and one of http_check or tcp_check; an update mask of the
message's fields, and on an uptime check only display_name, http_check,
tcp_check, timeout, content_matchers and selected_regions; a policy has 1-6
conditions, each with a display name and one condition type, a threshold
condition has a filter naming metric.type, a comparison, a duration in whole
minutes, and a cross-series reducer only with an aligner other than
ALIGN_NONE and an alignment period; a policy's notification channels exist;
an uptime check named by a policy's filter (metric.label.check_id) cannot be
deleted (FAILED_PRECONDITION), nor a channel a policy names unless ``force``.
Answers as the server does: names assigned (``projects/P/<collection>/<id>``,
conditions ``.../conditions/<id>``), creation and mutation records, a policy
``enabled`` when unset, an uptime check's checker_type STATIC_IP_CHECKERS and
period 60 s when unset, lists in pages of ``page_size`` (2 here, so a caller
that reads only the first page misses resources).

Does not check: filter syntax beyond metric.type, which metric types and
labels exist, channel types other than email and their verification, the
update mask's nested paths (user_labels.key), MQL, PromQL and SQL
conditions, alert strategies, snoozes, groups, services and SLOs, list
filters and order_by, quotas (500 policies, 100 uptime checks), whether the
real server rewrites a filter's spacing (the caller compares filters with
spacing normalized for that reason), IAM and scopes (``refuse`` makes every
call fail with a status, as a missing role or a disabled API does).
"""

from __future__ import annotations

import copy
import datetime
import itertools
import re
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any, ClassVar

import grpc  # type: ignore[import-untyped]
from google.cloud.monitoring_v3.types import (
    alert,
    alert_service,
    mutation_record,
    notification,
    notification_service,
    uptime,
    uptime_service,
)
from google.protobuf import empty_pb2, timestamp_pb2

LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
CHECK_UPDATABLE = {"display_name", "http_check", "tcp_check", "timeout", "content_matchers", "selected_regions"}
PERIODS = {60, 300, 600, 900}
CONDITION_TYPES = (
    "condition_threshold",
    "condition_absent",
    "condition_matched_log",
    "condition_monitoring_query_language",
    "condition_prometheus_query_language",
    "condition_sql",
)


class Refused(Exception):
    def __init__(self, code: Any, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class CloudMonitoringFake:
    """The three services for one project, on 127.0.0.1:<free port>; ``endpoint`` is what the client dials."""

    COLLECTIONS: ClassVar[dict[str, str]] = {
        "channel": "notificationChannels",
        "check": "uptimeCheckConfigs",
        "policy": "alertPolicies",
    }

    def __init__(self, project: str = "aistack-test", page_size: int = 2) -> None:
        self.project = project
        self.page_size = page_size
        self.store: dict[str, dict[str, Any]] = {kind: {} for kind in self.COLLECTIONS}
        self.writes: list[tuple[str, str]] = []
        self.refusal: tuple[Any, str] | None = None
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()
        self._server: Any = None
        self.endpoint = ""

    # --- life cycle and test helpers ---

    def __enter__(self) -> CloudMonitoringFake:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers(self._handlers())
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.endpoint = f"127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)

    def reset(self) -> None:
        with self._lock:
            self.store = {kind: {} for kind in self.COLLECTIONS}
            self.writes.clear()
            self.refusal = None

    def refuse(self, code: Any, details: str) -> None:
        """Make every call fail with this gRPC status, as a missing role (PERMISSION_DENIED) or a disabled API does."""
        self.refusal = (code, details)

    def items(self, kind: str) -> list[Any]:
        return list(self.store[kind].values())

    # --- the services ---

    def _handlers(self) -> tuple[Any, ...]:
        def unary(fn: Callable[[Any], Any], request: Any, response: Any) -> Any:
            def handle(req: Any, context: Any) -> Any:
                try:
                    with self._lock:
                        if self.refusal is not None:
                            raise Refused(*self.refusal)
                        return fn(req)
                except Refused as exc:
                    context.abort(exc.code, exc.details)

            serialize = response.SerializeToString if response is empty_pb2.Empty else response.serialize
            return grpc.unary_unary_rpc_method_handler(
                handle, request_deserializer=request.deserialize, response_serializer=serialize
            )

        a, n, u, empty = alert_service, notification_service, uptime_service, empty_pb2.Empty
        policy, channel, check = alert.AlertPolicy, notification.NotificationChannel, uptime.UptimeCheckConfig
        services: dict[str, dict[str, Any]] = {
            "AlertPolicyService": {
                "ListAlertPolicies": unary(
                    lambda r: self._list("policy", r), a.ListAlertPoliciesRequest, a.ListAlertPoliciesResponse
                ),
                "CreateAlertPolicy": unary(
                    lambda r: self._create("policy", r.name, r.alert_policy), a.CreateAlertPolicyRequest, policy
                ),
                "UpdateAlertPolicy": unary(
                    lambda r: self._update("policy", r.alert_policy, r.update_mask), a.UpdateAlertPolicyRequest, policy
                ),
                "DeleteAlertPolicy": unary(lambda r: self._delete("policy", r.name), a.DeleteAlertPolicyRequest, empty),
            },
            "NotificationChannelService": {
                "ListNotificationChannels": unary(
                    lambda r: self._list("channel", r), n.ListNotificationChannelsRequest, n.ListNotificationChannelsResponse
                ),
                "CreateNotificationChannel": unary(
                    lambda r: self._create("channel", r.name, r.notification_channel), n.CreateNotificationChannelRequest, channel
                ),
                "UpdateNotificationChannel": unary(
                    lambda r: self._update("channel", r.notification_channel, r.update_mask),
                    n.UpdateNotificationChannelRequest,
                    channel,
                ),
                "DeleteNotificationChannel": unary(
                    lambda r: self._delete("channel", r.name, r.force), n.DeleteNotificationChannelRequest, empty
                ),
            },
            "UptimeCheckService": {
                "ListUptimeCheckConfigs": unary(
                    lambda r: self._list("check", r), u.ListUptimeCheckConfigsRequest, u.ListUptimeCheckConfigsResponse
                ),
                "CreateUptimeCheckConfig": unary(
                    lambda r: self._create("check", r.parent, r.uptime_check_config), u.CreateUptimeCheckConfigRequest, check
                ),
                "UpdateUptimeCheckConfig": unary(
                    lambda r: self._update("check", r.uptime_check_config, r.update_mask), u.UpdateUptimeCheckConfigRequest, check
                ),
                "DeleteUptimeCheckConfig": unary(
                    lambda r: self._delete("check", r.name), u.DeleteUptimeCheckConfigRequest, empty
                ),
            },
        }
        return tuple(grpc.method_handlers_generic_handler(f"google.monitoring.v3.{name}", m) for name, m in services.items())

    def _parent(self, parent: str) -> None:
        if parent != f"projects/{self.project}":
            raise Refused(grpc.StatusCode.NOT_FOUND, f"Project {parent!r} not found or not accessible.")

    def _list(self, kind: str, request: Any) -> Any:
        self._parent(request.parent if kind == "check" else request.name)
        items = self.items(kind)
        start = int(request.page_token or 0)
        size = request.page_size or self.page_size
        page, rest = items[start : start + size], items[start + size :]
        token = str(start + size) if rest else ""
        field = {"channel": "notification_channels", "check": "uptime_check_configs", "policy": "alert_policies"}[kind]
        response = {
            "channel": notification_service.ListNotificationChannelsResponse,
            "check": uptime_service.ListUptimeCheckConfigsResponse,
            "policy": alert_service.ListAlertPoliciesResponse,
        }[kind]
        return response({field: page, "next_page_token": token, "total_size": len(items)})

    def _create(self, kind: str, parent: str, message: Any) -> Any:
        self._parent(parent)
        if message.name:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "name must be empty on create: the server assigns it")
        made = type(message).wrap(copy.deepcopy(type(message).pb(message)))
        made.name = f"projects/{self.project}/{self.COLLECTIONS[kind]}/{next(self._ids)}"
        self._validate(kind, made)
        self._server_fields(kind, made, created=True)
        self.store[kind][made.name] = made
        self.writes.append((f"create {kind}", made.name))
        return made

    def _update(self, kind: str, message: Any, mask: Any) -> Any:
        current = self.store[kind].get(message.name)
        if current is None:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"{message.name!r} does not exist")
        cls = type(current)
        paths = list(mask.paths)
        descriptor = cls.pb().DESCRIPTOR
        if not mask.IsValidForDescriptor(descriptor):
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"update_mask {paths} names fields {cls.__name__} does not have")
        if kind == "check" and not set(paths) <= CHECK_UPDATABLE:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT, f"uptime check fields {sorted(set(paths) - CHECK_UPDATABLE)} cannot be updated"
            )
        updated = cls.wrap(copy.deepcopy(cls.pb(current)))
        if paths:
            mask.MergeMessage(cls.pb(message), cls.pb(updated), replace_message_field=True, replace_repeated_field=True)
        else:
            updated = cls.wrap(copy.deepcopy(cls.pb(message)))
        self._validate(kind, updated)
        self._server_fields(kind, updated, created=False, before=current)
        self.store[kind][updated.name] = updated
        self.writes.append((f"update {kind}", updated.name))
        return updated

    def _delete(self, kind: str, name: str, force: bool = False) -> Any:
        if name not in self.store[kind]:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"{name!r} does not exist")
        for policy in self.store["policy"].values():
            filters = " ".join(c.condition_threshold.filter for c in policy.conditions)
            if kind == "check" and f'"{name.rsplit("/", 1)[-1]}"' in filters:
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION, f"uptime check {name} is used by alert policy {policy.name}")
            if kind == "channel" and not force and name in policy.notification_channels:
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION, f"channel {name} is used by alert policy {policy.name}")
        del self.store[kind][name]
        self.writes.append((f"delete {kind}", name))
        return empty_pb2.Empty()

    # --- what the server checks and fills in ---

    def _validate(self, kind: str, m: Any) -> None:
        def bad(text: str) -> Refused:
            return Refused(grpc.StatusCode.INVALID_ARGUMENT, text)

        if not m.display_name:
            raise bad("display_name is required")
        for key, value in m.user_labels.items():
            if not LABEL_KEY.fullmatch(key) or not LABEL_VALUE.fullmatch(value):
                raise bad(f"user label {key}={value!r}: lowercase letters, digits, - and _ only, 63 at most")
        if kind == "channel":
            if m.type_ != "email":
                raise bad(f"channel type {m.type_!r}: this fake knows email only")
            if "@" not in m.labels.get("email_address", ""):
                raise bad("an email channel needs labels.email_address")
        elif kind == "check":
            if m.monitored_resource.type != "uptime_url" or set(m.monitored_resource.labels) != {"host", "project_id"}:
                raise bad("monitored_resource must be uptime_url with labels host and project_id")
            if ("http_check" in m) == ("tcp_check" in m):
                raise bad("exactly one of http_check and tcp_check")
            if not 1 <= m.timeout.total_seconds() <= 60:
                raise bad("timeout must be between 1 and 60 seconds")
            if "period" in m and m.period.total_seconds() not in PERIODS:
                raise bad("period must be 60s, 300s, 600s or 900s")
        else:
            if not 1 <= len(m.conditions) <= 6:
                raise bad("a policy has 1 to 6 conditions")
            for condition in m.conditions:
                kinds = [t for t in CONDITION_TYPES if t in condition]
                if not condition.display_name or len(kinds) != 1:
                    raise bad("each condition needs a display_name and exactly one condition type")
                if kinds[0] == "condition_threshold":
                    self._threshold(condition.condition_threshold, bad)
            for channel in m.notification_channels:
                if channel not in self.store["channel"]:
                    raise Refused(grpc.StatusCode.NOT_FOUND, f"notification channel {channel} does not exist")

    @staticmethod
    def _threshold(t: Any, bad: Callable[[str], Refused]) -> None:
        if "metric.type" not in t.filter:
            raise bad(f"filter {t.filter!r} must name a metric.type")
        if not t.comparison:  # COMPARISON_UNSPECIFIED
            raise bad("comparison is required")
        if int(t.duration.total_seconds()) % 60:
            raise bad("duration must be a whole number of minutes")
        for agg in t.aggregations:
            aligned = agg.per_series_aligner not in (0,) and agg.alignment_period.total_seconds() > 0
            if agg.cross_series_reducer and not aligned:
                raise bad("a cross_series_reducer needs a per_series_aligner other than ALIGN_NONE and an alignment_period")

    def _server_fields(self, kind: str, m: Any, created: bool, before: Any = None) -> None:
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        record = mutation_record.MutationRecord(mutate_time=now, mutated_by="aistack-ops@fake")
        if kind == "policy":
            m.creation_record = record if created else before.creation_record
            m.mutation_record = record
            if "enabled" not in m:
                m.enabled = True
            for condition in m.conditions:
                if not condition.name:
                    condition.name = f"{m.name}/conditions/{next(self._ids)}"
        elif kind == "channel":
            m.creation_record = record if created else before.creation_record
            m.mutation_records.append(record)
        else:
            if not m.checker_type:
                m.checker_type = uptime.UptimeCheckConfig.CheckerType.STATIC_IP_CHECKERS
            if "period" not in m:
                m.period = datetime.timedelta(seconds=60)
