"""The slice protocol: each slice of the plan is one module with its checks.

A slice module has NUMBER, TITLE, REQUIRES (the earlier slices it needs) and ``verify``:
the plan's success criteria as executable checks, each a Check that says
what was expected and what was seen. Planning, applying and rolling back
come with the slice engine; ``verify`` is what every slice already has.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ops.config import Settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class Target:
    """Where the running stack answers: the gateway and Langfuse, with their keys."""

    gateway_url: str
    master_key: str
    langfuse_url: str
    langfuse_public_key: str
    langfuse_secret_key: str
    timeout: float = 30.0
    # Breaks the OpenAI key while the context is open (the plan's slice-5 drill):
    # the test harness rejects the key at the mock provider; on the VPS the slice
    # engine restarts litellm with a broken key. None: no drill available here.
    break_openai: Callable[[], AbstractContextManager[None]] | None = None
    # The project's settings, for slices that act through ops itself (slice 10 runs a backup and a drill).
    settings: Settings | None = None
    # n8n as callers reach it (its webhooks) and the routing webhook's header-auth secret (slice 4)
    n8n_url: str = ""
    webhook_key: str = ""
    # the plan's time limits are multiplied by this (OPS_VERIFY_TIME_FACTOR; 1 on the VM)
    time_factor: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Target:
        """Given safe Settings, return the stack's Target. Raise ConfigError on placeholder secrets."""
        settings.require_safe_secrets()
        env = settings.effective_env
        # where traces are read: OPS_LANGFUSE_URL, else the Langfuse on this VM; none without tracing (the default)
        domain = env.get("LANGFUSE_DOMAIN", "").strip()
        langfuse = env.get("OPS_LANGFUSE_URL") or (f"https://{domain}" if domain else "")
        return cls(
            gateway_url=env.get("OPS_GATEWAY_URL") or "http://127.0.0.1:4000",
            master_key=env["LITELLM_MASTER_KEY"],
            langfuse_url=langfuse,
            langfuse_public_key=env["LANGFUSE_PUBLIC_KEY"],
            langfuse_secret_key=env["LANGFUSE_SECRET_KEY"],
            settings=settings,
            # the public webhook URL through Caddy (webhook paths carry their own auth), unless OPS_N8N_URL says otherwise
            n8n_url=env.get("OPS_N8N_URL") or (f"https://{env['N8N_DOMAIN']}" if env.get("N8N_DOMAIN") else ""),
            webhook_key=env.get("N8N_WEBHOOK_SECRET", ""),
            time_factor=settings.verify_time_factor,
        )

    def limit(self, seconds: float) -> float:
        """Given one of the plan's time limits, return it as this target allows it (times time_factor)."""
        return seconds * self.time_factor

    def in_time(self, name: str, seconds: float, limit: float, what: str = "") -> Check:
        """Given a measured duration and the plan's limit for it, return the Check (the limit times time_factor)."""
        allowed = self.limit(limit)
        scaled = f" x{self.time_factor:g} = {allowed:g} s" if self.time_factor != 1 else ""
        return Check(name, seconds <= allowed, f"{seconds:.2f} s{what} (limit {limit:g} s{scaled})")

    def chat(self, model: str, content: str, **extra: Any) -> tuple[httpx.Response, float]:
        """Send one chat completion through the gateway; return the response and its wall time in seconds."""
        started = time.monotonic()
        response = httpx.post(
            f"{self.gateway_url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {self.master_key}"},
            json={"model": model, "messages": [{"role": "user", "content": content}], **extra},
            timeout=self.timeout,
        )
        return response, time.monotonic() - started

    def langfuse(self, path: str) -> httpx.Response:
        """GET Langfuse's public API at path. Raise httpx.RequestError naming the settings when there is no Langfuse."""
        if not self.langfuse_url:
            raise httpx.RequestError(
                "no Langfuse to read traces from: LANGFUSE_HOST is empty, so LiteLLM sends none (the default); set "
                "it and the project's keys, and OPS_LANGFUSE_URL for Langfuse Cloud (docs/ARCHITECTURE.md)"
            )
        return httpx.get(
            f"{self.langfuse_url}/api/public/{path}", auth=(self.langfuse_public_key, self.langfuse_secret_key), timeout=10
        )


def new_trace_id(slice_number: int) -> str:
    return f"ops-slice{slice_number}-{uuid.uuid4().hex[:12]}"


def wait_for_trace(
    target: Target, trace_id: str, ready: Callable[[dict[str, Any]], bool], within: float
) -> dict[str, Any] | None:
    """Poll Langfuse for trace_id until ready(trace) holds; return the trace, or None after within seconds."""
    deadline = time.monotonic() + within
    while True:
        response = target.langfuse(f"traces/{trace_id}")
        if response.status_code == 200:
            trace: dict[str, Any] = response.json()
            if ready(trace):
                return trace
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.5)


def generations(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in trace.get("observations", []) if o.get("type") == "GENERATION"]


class Slice(Protocol):
    """A slice module: NUMBER, TITLE, REQUIRES (earlier slices) and verify()."""

    NUMBER: int
    TITLE: str
    REQUIRES: tuple[int, ...]
    SERVICES: tuple[str, ...]  # what apply brings up with docker compose
    FILES: tuple[str, ...]  # what the safety snapshot copies (relative to the project)
    DATABASES: tuple[str, ...]  # what the safety snapshot dumps

    def verify(self, target: Target) -> list[Check]: ...


def guarded(name: str, probe: Callable[[], Check]) -> Check:
    """Run one probe; an unreachable service becomes a failed Check naming it, not an exception."""
    try:
        return probe()
    except httpx.HTTPError as exc:
        return Check(name, False, f"{type(exc).__name__}: {exc}")


def pending(what: str) -> list[Check]:
    """The one failing check of a slice whose criteria are not executable yet: never a false pass."""
    return [Check("criteria", False, f"not checkable yet: they arrive with {what}")]
