"""A LiteLLM callback that traces every call to Langfuse in batches, off the request path.

LiteLLM loads it from litellm-config.yaml (``litellm_settings.callbacks:
["aistack_langfuse.exporter"]``; source: litellm proxy/types_utils/utils.py
``get_instance_fn``, which imports ``module.instance`` from beside the config
or from the Python path). The directory of this file is on ``PYTHONPATH`` of
the litellm container (docker-compose.vps.yml) and of the local harness
(ops/local/processes.py ``LiteLLMServer``). It imports only the standard
library and httpx (a LiteLLM dependency): the container has no ``ops``.

On the event loop each finished call costs a dict lookup and a queue put; a
daemon thread turns the queued calls into Langfuse ingestion events (a
``trace-create`` and a ``generation-create`` each, the shape LiteLLM's v2
logger sends) and posts them in batches to ``$LANGFUSE_HOST/api/public/
ingestion`` (source: langfuse/langfuse web/src/pages/api/public/ingestion.ts,
207 with per-event errors). Enabled only when LANGFUSE_HOST and
LANGFUSE_PUBLIC_KEY are both set, as the compose file passes them.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import logging
import os
import queue
import threading
import time
import uuid
from typing import Any

import httpx
from litellm.integrations.custom_logger import CustomLogger

LOG = logging.getLogger("aistack_langfuse")
FLUSH_SECONDS = 0.5  # how long the thread gathers calls before it posts a batch
BATCH_EVENTS = 200  # events per request, well under Langfuse's 4.5 MB body limit for short calls
QUEUE_CALLS = 10_000  # calls held while Langfuse is slow; past this, new ones are dropped and counted
ATTEMPTS = 3  # per batch: a network error or a 5xx is retried, then the batch is dropped
TIMEOUT_SECONDS = 10.0
DISABLED = "aistack_langfuse: tracing is off: LANGFUSE_HOST or LANGFUSE_PUBLIC_KEY is empty"


def _iso(value: Any) -> str | None:
    """Given a datetime or epoch seconds, return its ISO 8601 UTC form (None for anything else)."""
    if isinstance(value, dt.datetime):
        value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
        return str(value.astimezone(dt.UTC).isoformat()).replace("+00:00", "Z")
    if isinstance(value, (int, float)) and value > 0:
        return dt.datetime.fromtimestamp(value, dt.UTC).isoformat().replace("+00:00", "Z")
    return None


def _model(kwargs: dict[str, Any], metadata: dict[str, Any]) -> str:
    """Given a call's kwargs, return the model name as LiteLLM's logger names it (the deployment's, with its prefix)."""
    deployment = metadata.get("deployment")
    if isinstance(deployment, str) and "/" in deployment:  # source: litellm core_helpers.reconstruct_model_name
        return deployment
    return str(kwargs.get("model") or "")


def call_events(kwargs: dict[str, Any], level: str, now: str | None = None) -> list[dict[str, Any]]:
    """Given a finished call's kwargs (with LiteLLM's standard_logging_object), return its two ingestion events.

    The trace takes its id, name, session and tags from the request's metadata
    (trace_id, trace_name, session_id, tags), else LiteLLM's own trace id and
    ``litellm-<call type>``; the generation carries model, usage, cost, times
    and, for a failed attempt, level ERROR with the error as its status message.
    """
    payload: dict[str, Any] = kwargs.get("standard_logging_object") or {}
    litellm_params = kwargs.get("litellm_params") or {}
    metadata: dict[str, Any] = litellm_params.get("metadata") or {}
    stamp = now or _iso(dt.datetime.now(dt.UTC)) or ""
    trace_id = str(metadata.get("trace_id") or payload.get("trace_id") or kwargs.get("litellm_call_id") or uuid.uuid4())
    tags = [str(t) for t in (payload.get("request_tags") or metadata.get("tags") or [])]
    error = level == "ERROR"
    output = payload.get("error_str") if error else payload.get("response")
    trace: dict[str, Any] = {
        "id": trace_id,
        "name": metadata.get("trace_name") or f"litellm-{kwargs.get('call_type') or 'completion'}",
        "sessionId": metadata.get("session_id"),
        "userId": metadata.get("trace_user_id") or payload.get("end_user") or None,
        "tags": tags,
        "input": payload.get("messages"),
    }
    if not error:
        trace["output"] = output
    start, end = _iso(payload.get("startTime")), _iso(payload.get("endTime"))
    first_token = _iso(payload.get("completionStartTime"))
    prompt, completion = int(payload.get("prompt_tokens") or 0), int(payload.get("completion_tokens") or 0)
    generation: dict[str, Any] = {
        "id": str(metadata.get("generation_id") or payload.get("id") or uuid.uuid4()),
        "traceId": trace_id,
        "name": metadata.get("generation_name") or f"litellm-{kwargs.get('call_type') or 'completion'}",
        "startTime": start,
        "endTime": end,
        "completionStartTime": first_token if not error else None,
        "model": _model(kwargs, metadata),
        "modelParameters": {k: v for k, v in (payload.get("model_parameters") or {}).items() if _scalar(v)},
        "input": payload.get("messages"),
        "output": output,
        "usage": {"input": prompt, "output": completion, "total": int(payload.get("total_tokens") or 0), "unit": "TOKENS"},
        "usageDetails": {"input": prompt, "output": completion},
        "costDetails": {"total": float(payload.get("response_cost") or 0.0)},
        "level": "ERROR" if error else "DEFAULT",
        "statusMessage": str(output)[:2000] if error and output else None,
        "metadata": {
            "model_group": payload.get("model_group"),
            "model_id": payload.get("model_id"),
            "api_base": payload.get("api_base"),
        },
    }
    return [
        {"id": str(uuid.uuid4()), "timestamp": stamp, "type": "trace-create", "body": _compact(trace)},
        {"id": str(uuid.uuid4()), "timestamp": stamp, "type": "generation-create", "body": _compact(generation)},
    ]


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _compact(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


class LangfuseBatchExporter(CustomLogger):
    """Queue each finished LiteLLM call; a daemon thread posts them to Langfuse's ingestion API in batches."""

    def __init__(self, host: str | None = None, public_key: str | None = None, secret_key: str | None = None) -> None:
        super().__init__()
        self.host = (host if host is not None else os.environ.get("LANGFUSE_HOST", "")).rstrip("/")
        self.public_key = public_key if public_key is not None else os.environ.get("LANGFUSE_PUBLIC_KEY", "")
        self.secret_key = secret_key if secret_key is not None else os.environ.get("LANGFUSE_SECRET_KEY", "")
        self.enabled = bool(self.host and self.public_key)
        if not self.enabled:
            LOG.warning(DISABLED)
        # a call, or None: the process is exiting, send what is gathered and stop
        self.calls: queue.Queue[tuple[dict[str, Any], str] | None] = queue.Queue(QUEUE_CALLS)
        self._stopping = False
        self.queued = 0
        self.dropped = 0
        self.sent_batches = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # LiteLLM calls these on the event loop after each call (source: litellm integrations/custom_logger.py)
    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.enqueue(kwargs, "DEFAULT")

    async def async_log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.enqueue(kwargs, "ERROR")

    def enqueue(self, kwargs: dict[str, Any], level: str) -> None:
        """Given a finished call's kwargs, queue it for the exporter thread (dropped and counted when the queue is full)."""
        if not self.enabled:
            return
        self._ensure_thread()
        # the thread reads only these, which LiteLLM does not change after logging
        keys = ("standard_logging_object", "litellm_params", "call_type", "litellm_call_id", "model")
        try:
            self.calls.put_nowait(({k: kwargs.get(k) for k in keys}, level))
            self.queued += 1
        except queue.Full:
            self.dropped += 1

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="aistack-langfuse", daemon=True)
                    self._thread.start()
                    atexit.register(self.flush)

    def _run(self) -> None:
        with httpx.Client(auth=(self.public_key, self.secret_key), timeout=TIMEOUT_SECONDS) as client:
            while not self._stopping:
                self._send(client, self._gather(block=True))

    def _gather(self, block: bool) -> list[dict[str, Any]]:
        """Return the events of the calls queued within FLUSH_SECONDS of the first one (up to BATCH_EVENTS)."""
        events: list[dict[str, Any]] = []
        deadline = None
        while len(events) < BATCH_EVENTS:
            try:
                if deadline is None:
                    item = self.calls.get(block=block)
                    deadline = time.monotonic() + FLUSH_SECONDS
                else:
                    item = self.calls.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self._stopping = True
                break
            kwargs, level = item
            try:
                events.extend(call_events(kwargs, level))
            except Exception:  # a call LiteLLM logged oddly must not stop the thread
                LOG.exception("aistack_langfuse: could not build the events of one call")
        return events

    def _send(self, client: httpx.Client, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        for attempt in range(ATTEMPTS):
            try:
                response = client.post(f"{self.host}/api/public/ingestion", json={"batch": events})
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 500:
                    self.sent_batches += 1
                    if response.status_code >= 300:
                        LOG.error("aistack_langfuse: Langfuse refused a batch: %s %s", response.status_code, response.text[:300])
                    elif response.status_code == 207 and (errors := response.json().get("errors")):
                        LOG.error("aistack_langfuse: Langfuse refused %d events: %s", len(errors), str(errors)[:300])
                    return
                problem = f"HTTP {response.status_code}"
            time.sleep(0.5 * 2**attempt)
        LOG.error("aistack_langfuse: dropped %d events after %d attempts (%s)", len(events), ATTEMPTS, problem)

    def flush(self) -> None:
        """Post whatever is queued or gathered now (at exit: `docker stop` right after a call, and in tests)."""
        if not self.enabled:
            return
        if self._thread is not None and self._thread.is_alive():  # it sends what it holds, then stops
            with contextlib.suppress(queue.Full):
                self.calls.put(None, timeout=TIMEOUT_SECONDS)
            self._thread.join(TIMEOUT_SECONDS * ATTEMPTS)
        with httpx.Client(auth=(self.public_key, self.secret_key), timeout=TIMEOUT_SECONDS) as client:
            while events := self._gather(block=False):
                self._send(client, events)


exporter = LangfuseBatchExporter()
