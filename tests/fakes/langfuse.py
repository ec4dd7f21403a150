"""A contract fake of the Langfuse v3 server: ingestion and the public read API.

Every ingested event is validated with the Langfuse SDK's models, which are
generated from Langfuse's published API definition, so a malformed event
gets the per-event 400 that the real server puts in its 207 answer.

Speaks: ``POST /api/public/ingestion`` (Basic auth with the project keys;
207 with ``successes`` and ``errors``), ``GET /api/public/traces``,
``GET /api/public/traces/{id}`` (with observations, latency and total cost),
``GET /api/public/observations?traceId=``, ``GET /api/public/health``.

Refuses, as the real server does (source: langfuse/langfuse
web/src/pages/api/public/ingestion.ts, and Next.js's API body parser): a
JSON body that does not parse, 400 "Invalid JSON" (before authentication, as
Next.js parses the body first); wrong keys, 401; a body without a ``batch``
list, 400 ``{"message": "Invalid request data", "errors": [...]}``; a
malformed event, its own 400 inside the 207
(tests/integration/test_fakes_contract.py).

Does not check: the OpenTelemetry endpoint, scores, sessions, prompts,
datasets, media uploads, pagination past one page, rate limits, the 4.5 MB
body limit (8 MB here), ClickHouse's eventual consistency (reads see writes
at once) and Langfuse's own cost calculation (cost is what the client sent).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from typing import Any

from aiohttp import web
from langfuse.api.core.pydantic_utilities import pydantic_v1
from langfuse.api.resources.ingestion.types import IngestionEvent

OBSERVATION_TYPES = {
    "span-create": "SPAN",
    "span-update": "SPAN",
    "generation-create": "GENERATION",
    "generation-update": "GENERATION",
    "event-create": "EVENT",
    "observation-create": None,
    "observation-update": None,
}


class LangfuseState:
    def __init__(self, public_key: str, secret_key: str) -> None:
        self.public_key, self.secret_key = public_key, secret_key
        self.traces: dict[str, dict[str, Any]] = {}
        self.observations: dict[str, dict[str, Any]] = {}
        self.events_seen: set[str] = set()
        self.batches = 0


STATE = web.AppKey("state", LangfuseState)


def _authorised(request: web.Request, state: LangfuseState) -> bool:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return False
    return (user, password) == (state.public_key, state.secret_key)


def _unauthorised() -> web.Response:
    return web.json_response({"message": "Invalid credentials. Confirm that you've configured the correct host."}, status=401)


def _apply(state: LangfuseState, event: dict[str, Any]) -> None:
    body = event["body"]
    kind = event["type"]
    if kind == "trace-create":
        trace = state.traces.setdefault(body["id"], {"id": body["id"], "timestamp": body.get("timestamp") or event["timestamp"]})
        trace.update({k: v for k, v in body.items() if v is not None})
    elif kind in OBSERVATION_TYPES:
        observation = state.observations.setdefault(
            body["id"],
            {
                "id": body["id"],
                "type": OBSERVATION_TYPES[kind] or body.get("type", "SPAN"),
                "level": "DEFAULT",
                "startTime": body.get("startTime") or event["timestamp"],
            },
        )
        observation.update({k: v for k, v in body.items() if v is not None})
        trace_id = observation.get("traceId")
        if trace_id and trace_id not in state.traces:
            state.traces[trace_id] = {"id": trace_id, "timestamp": observation["startTime"]}


def _batch_problem(payload: Any) -> str | None:
    """Given a parsed body, return zod's message for what breaks the schema {batch: unknown[]}, or None."""
    if not isinstance(payload, dict):
        return f"Expected object, received {_zod_type(payload)}"
    if "batch" not in payload:
        return "Required"
    if not isinstance(payload["batch"], list):
        return f"Expected array, received {_zod_type(payload['batch'])}"
    return None


def _zod_type(value: Any) -> str:
    names = {str: "string", bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), "unknown")


async def ingestion(request: web.Request) -> web.Response:
    state = request.app[STATE]
    text = await request.text()
    payload: Any = text  # a body that is not JSON reaches Langfuse's handler as a string
    if request.content_type == "application/json":
        try:
            payload = json.loads(text) if text else {}
        except ValueError:
            return web.Response(status=400, text="Invalid JSON")  # Next.js's body parser, before any handler
    if not _authorised(request, state):
        return _unauthorised()
    problem = _batch_problem(payload)
    if problem:  # zod's messages for the handler's schema {batch: unknown[]}
        return web.json_response({"message": "Invalid request data", "errors": [problem]}, status=400)
    state.batches += 1
    successes, errors = [], []
    for raw in payload["batch"]:
        event_id = raw.get("id", "?") if isinstance(raw, dict) else "?"
        try:
            pydantic_v1.parse_obj_as(IngestionEvent, raw)
        except pydantic_v1.ValidationError as exc:
            errors.append({"id": event_id, "status": 400, "message": "Invalid request data", "error": str(exc)[:500]})
            continue
        if event_id not in state.events_seen:  # the envelope id deduplicates retries
            state.events_seen.add(event_id)
            if raw["type"] != "sdk-log" and raw["type"] != "score-create":
                _apply(state, raw)
        successes.append({"id": event_id, "status": 201})
    return web.json_response({"successes": successes, "errors": errors}, status=207)


def _seconds(start: Any, end: Any) -> float:
    try:
        return (
            dt.datetime.fromisoformat(str(end).replace("Z", "+00:00"))
            - dt.datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        ).total_seconds()
    except ValueError:
        return 0.0


def _observation_view(observation: dict[str, Any]) -> dict[str, Any]:
    view = copy.deepcopy(observation)
    usage = view.get("usage") or {}
    details = view.get("usageDetails") or {}
    view["promptTokens"] = details.get("input", usage.get("input", 0)) or 0
    view["completionTokens"] = details.get("output", usage.get("output", 0)) or 0
    view["totalTokens"] = details.get("total", usage.get("total", 0)) or view["promptTokens"] + view["completionTokens"]
    cost = (view.get("costDetails") or {}).get("total", usage.get("totalCost"))
    view["calculatedTotalCost"] = cost
    view["latency"] = _seconds(view.get("startTime"), view.get("endTime")) if view.get("endTime") else None
    return view


def _trace_details(state: LangfuseState, trace_id: str) -> dict[str, Any]:
    trace = copy.deepcopy(state.traces[trace_id])
    observations = [_observation_view(o) for o in state.observations.values() if o.get("traceId") == trace_id]
    ends = [str(o["endTime"]) for o in observations if o.get("endTime")]
    starts = [o["startTime"] for o in observations]
    trace.update(
        {
            "htmlPath": f"/project/fake/traces/{trace_id}",
            "latency": _seconds(min(starts), max(ends)) if starts and ends else 0.0,
            "totalCost": sum(o["calculatedTotalCost"] or 0 for o in observations),
            "observations": observations,
            "scores": [],
        }
    )
    return trace


async def get_trace(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not _authorised(request, state):
        return _unauthorised()
    trace_id = request.match_info["trace_id"]
    if trace_id not in state.traces:
        return web.json_response({"message": f"Trace {trace_id} not found within authorized project"}, status=404)
    return web.json_response(_trace_details(state, trace_id))


def _page(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": items, "meta": {"page": 1, "limit": len(items), "totalItems": len(items), "totalPages": 1}}


async def list_traces(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not _authorised(request, state):
        return _unauthorised()
    return web.json_response(_page([_trace_details(state, t) for t in state.traces]))


async def list_observations(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not _authorised(request, state):
        return _unauthorised()
    trace_id = request.query.get("traceId")
    items = [_observation_view(o) for o in state.observations.values() if trace_id in (None, o.get("traceId"))]
    return web.json_response(_page(items))


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "OK", "version": "3.174.1"})


def make_app(public_key: str, secret_key: str) -> web.Application:
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app[STATE] = LangfuseState(public_key, secret_key)
    app.router.add_post("/api/public/ingestion", ingestion)
    app.router.add_get("/api/public/traces", list_traces)
    app.router.add_get("/api/public/traces/{trace_id}", get_trace)
    app.router.add_get("/api/public/observations", list_observations)
    app.router.add_get("/api/public/health", health)
    return app


def main() -> None:
    """Serve the fake on 0.0.0.0:PORT with the project keys from LANGFUSE_PUBLIC_KEY / LANGFUSE_SECRET_KEY (stack tier)."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description="Langfuse contract fake")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    app = make_app(os.environ["LANGFUSE_PUBLIC_KEY"], os.environ["LANGFUSE_SECRET_KEY"])
    web.run_app(app, host="0.0.0.0", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
