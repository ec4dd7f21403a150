"""Slice 5: with the OpenAI key broken, gpt-4 is answered by claude-3 within 5 s, both attempts traced.

The key is broken by the target's drill for the duration of the check (the
plan's "set OPENAI_API_KEY=invalid"), and restored afterwards. LiteLLM's
``mock_testing_fallbacks`` would avoid the drill but needs
``dangerously_allow_mock_testing_request_params`` on the live gateway.
"""

from __future__ import annotations

import httpx

from ops.slices.base import Check, Target, generations, new_trace_id, wait_for_trace

NUMBER = 5
TITLE = "Fallback logic"
REQUIRES = (4,)
SERVICES: tuple[str, ...] = ("litellm",)
FILES: tuple[str, ...] = ("litellm-config.yaml",)
DATABASES: tuple[str, ...] = ()
WITHIN_SECONDS = 5.0


def _fallback(target: Target) -> list[Check]:
    trace_id = new_trace_id(NUMBER)
    assert target.break_openai is not None
    with target.break_openai():
        response, seconds = target.chat("gpt-4", "Hello", metadata={"trace_id": trace_id})
    if response.status_code != 200:
        return [Check("fallback answers", False, f"answered {response.status_code}: {response.text[:200]}")]
    served = response.json().get("model", "")
    attempts = int(response.headers.get("x-litellm-attempted-fallbacks") or 0)
    checks = [
        Check("fallback answers", "claude" in served and attempts >= 1, f"served by {served} after {attempts} fallback(s)"),
        target.in_time("fallback in time", seconds, WITHIN_SECONDS),
    ]
    trace = wait_for_trace(target, trace_id, lambda t: len(generations(t)) >= 2, 10)
    levels = sorted(g.get("level", "?") for g in generations(trace)) if trace else []
    checks.append(
        Check(
            "both attempts traced",
            levels.count("ERROR") >= 1 and len(levels) >= 2,
            f"generations in trace {trace_id}: {', '.join(levels) or 'none'}",
        )
    )
    return checks


def verify(target: Target) -> list[Check]:
    if target.break_openai is None:
        return [
            Check("fallback answers", False, "no drill to break the OpenAI key here: run it as `make slice-5` (slice engine)")
        ]
    try:
        return _fallback(target)
    except httpx.HTTPError as exc:
        return [Check("fallback answers", False, f"{type(exc).__name__}: {exc}")]
