"""Slice 4: the n8n routing workflow routes each task to the plan's model, says why, answers in 3 s, and is traced.

Apply deploys workflows/litellm-router.json and its two credentials (the
webhook's header key N8N_WEBHOOK_SECRET, the gateway's LITELLM_MASTER_KEY)
into n8n with n8n's CLI, publishes it and restarts n8n, only when n8n does
not hold them already (ops.workflows.n8n); a rollback restores n8n's
database from the snapshot, which removes them. Verify calls the webhook the
way a user does, through Caddy at https://N8N_DOMAIN (OPS_N8N_URL overrides).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx

from ops.errors import ConfigError
from ops.slices.base import Check, Target, generations, guarded, wait_for_trace

if TYPE_CHECKING:
    from ops.slices.engine import Runtime

NUMBER = 4
TITLE = "n8n routing workflow"
REQUIRES: tuple[int, ...] = (3,)
SERVICES: tuple[str, ...] = ("n8n",)
FILES: tuple[str, ...] = ("workflows/litellm-router.json",)
DATABASES: tuple[str, ...] = ("n8n",)
# the plan's testing scenarios: task -> the model group it must reach
TABLE = {"Explain AI": "gpt-4", "2+2=?": "gemini-2", "x" * 60_000: "claude-3"}
WITHIN_SECONDS = 3.0
TRACE_SECONDS = 10.0


def deploy(runtime: Runtime) -> list[str]:
    """Deploy the routing workflow and its credentials into the stack's n8n; return what changed.

    Raise ConfigError if the workflow's router is behind routing-rules.yaml or a secret is missing,
    ServiceError if n8n's CLI fails.
    """
    from ops.workflows import router
    from ops.workflows.n8n import ComposeN8n, deploy

    settings = runtime.settings
    drift = router.router_drift(settings)
    if drift:
        raise ConfigError(drift)
    env = settings.effective_env
    missing = [name for name in ("N8N_WEBHOOK_SECRET", "LITELLM_MASTER_KEY") if not env.get(name)]
    if missing:
        raise ConfigError(f"vps.env has no {' or '.join(missing)}: add it (`ops secrets init` generates it in a new file)")
    gateway = env.get("OPS_N8N_GATEWAY_URL") or router.DEFAULT_GATEWAY_URL
    workflow = router.for_n8n(router.load_workflow(router.workflow_path(settings)), gateway)
    credentials = router.credentials(env["N8N_WEBHOOK_SECRET"], env["LITELLM_MASTER_KEY"], gateway)
    return deploy(runtime.n8n or ComposeN8n(runtime.compose), workflow, credentials)


def webhook_url(target: Target) -> str:
    from ops.workflows.router import WEBHOOK_PATH

    return f"{target.n8n_url.rstrip('/')}/webhook/{WEBHOOK_PATH}"


def call(target: Target, body: Any, key: str | None = None) -> tuple[httpx.Response, float]:
    """POST body to the routing webhook (with the webhook key unless key says otherwise); return it and its seconds."""
    from ops.workflows.router import WEBHOOK_HEADER

    headers = {WEBHOOK_HEADER: target.webhook_key if key is None else key}
    started = time.monotonic()
    response = httpx.post(webhook_url(target), json=body, headers=headers, timeout=target.timeout)
    return response, time.monotonic() - started


def _answers(target: Target) -> tuple[list[Check], dict[str, Any]]:
    routed: list[str] = []
    reasons: list[bool] = []
    slowest, first = 0.0, dict[str, Any]()
    for task, expected in TABLE.items():
        response, seconds = call(target, {"task": task})
        slowest = max(slowest, seconds)
        label = task if len(task) < 20 else f"{len(task):,} characters"
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if response.status_code != 200:
            routed.append(f"{label!r}: answered {response.status_code} {response.text[:160]}")
            continue
        first = first or body
        routed.append(f"{label!r} -> {body.get('model')}" + ("" if body.get("model") == expected else f" (expected {expected})"))
        reasons.append(bool(body.get("reason")))
    ok_table = all("->" in line and "expected" not in line for line in routed)
    checks = [
        Check("routing table", ok_table, "; ".join(routed)),
        Check("reason in each answer", len(reasons) == len(TABLE) and all(reasons), f"{sum(reasons)} of {len(TABLE)}"),
        target.in_time("answers within 3 s", slowest, WITHIN_SECONDS, " for the slowest"),
    ]
    return checks, first


def _auth(target: Target) -> Check:
    response, _ = call(target, {"task": "2+2=?"}, key="")
    return Check("webhook needs its key", response.status_code in (401, 403), f"without the key: {response.status_code}")


def _trace(target: Target, answer: dict[str, Any]) -> Check:
    trace_id = str(answer.get("trace_id") or "")
    if not trace_id:
        return Check("trace in Langfuse", False, "the answer names no trace_id")
    trace = wait_for_trace(target, trace_id, lambda t: bool(generations(t)), TRACE_SECONDS)
    if trace is None:
        return Check("trace in Langfuse", False, f"no trace {trace_id} in Langfuse within {TRACE_SECONDS:.0f} s")
    model = str(generations(trace)[0].get("model") or "")
    tags = trace.get("tags") or []
    served = str(answer.get("served_by") or "?")
    ok = served in model and f"route:{answer.get('model')}" in tags
    return Check("trace in Langfuse", ok, f"trace {trace_id}: model {model}, tags {', '.join(map(str, tags))}")


def verify(target: Target) -> list[Check]:
    if not target.n8n_url or not target.webhook_key:
        missing = "no n8n URL or webhook key: set N8N_DOMAIN (or OPS_N8N_URL) and N8N_WEBHOOK_SECRET"
        return [Check("routing webhook", False, missing)]
    try:
        checks, answer = _answers(target)
    except httpx.HTTPError as exc:
        return [Check("routing table", False, f"{type(exc).__name__}: {exc}")]
    checks.append(guarded("webhook needs its key", lambda: _auth(target)))
    checks.append(guarded("trace in Langfuse", lambda: _trace(target, answer)))
    return checks
