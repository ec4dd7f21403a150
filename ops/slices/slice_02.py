"""Slice 2: every gateway call traced in Langfuse with model, tokens, cost and latency."""

from __future__ import annotations

from typing import Any

from ops.slices.base import Check, Target, generations, guarded, new_trace_id, wait_for_trace

NUMBER = 2
TITLE = "Langfuse integration"
REQUIRES = (1,)
SERVICES: tuple[str, ...] = ("litellm",)
FILES: tuple[str, ...] = ("litellm-config.yaml",)
DATABASES: tuple[str, ...] = ()
WITHIN_SECONDS = 10.0


def complete_generation(generation: dict[str, Any]) -> list[str]:
    """Return what a traced generation lacks of model, tokens, cost and latency (empty when complete)."""
    lacks = []
    if not generation.get("model"):
        lacks.append("model")
    if not (generation.get("promptTokens") or 0) + (generation.get("completionTokens") or 0):
        lacks.append("tokens")
    if not generation.get("calculatedTotalCost"):
        lacks.append("cost")
    if generation.get("latency") is None:
        lacks.append("latency")
    return lacks


def _traced(target: Target) -> Check:
    trace_id = new_trace_id(NUMBER)
    session_id = f"{trace_id}-session"
    response, _ = target.chat("gpt-4", "Hello", metadata={"trace_id": trace_id, "session_id": session_id})
    if response.status_code != 200:
        return Check("trace in Langfuse", False, f"the gateway answered {response.status_code}")
    trace = wait_for_trace(target, trace_id, lambda t: bool(generations(t)), WITHIN_SECONDS)
    if trace is None:
        return Check("trace in Langfuse", False, f"no trace {trace_id} in Langfuse within {WITHIN_SECONDS:.0f} s")
    generation = generations(trace)[0]
    lacks = complete_generation(generation)
    if trace.get("sessionId") != session_id:
        lacks.append(f"session id (got {trace.get('sessionId')!r})")
    detail = (
        f"trace {trace_id}: model {generation.get('model')}, {generation.get('totalTokens')} tokens, "
        f"${generation.get('calculatedTotalCost')}, {generation.get('latency')} s"
    )
    return Check("trace in Langfuse", not lacks, detail + (f"; lacks {', '.join(lacks)}" if lacks else ""))


def verify(target: Target) -> list[Check]:
    return [guarded("trace in Langfuse", lambda: _traced(target))]
