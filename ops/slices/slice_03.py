"""Slice 3: the three models answer, each traced, and their cost per token ranks GPT > Claude > Gemini."""

from __future__ import annotations

from ops.slices.base import Check, Target, generations, guarded, new_trace_id, wait_for_trace

NUMBER = 3
TITLE = "Test all 3 models"
REQUIRES = (2,)
SERVICES: tuple[str, ...] = ()
FILES: tuple[str, ...] = ()
DATABASES: tuple[str, ...] = ()
PROMPTS = {
    "gpt-4": "Explain quantum computing in 10 words",
    "claude-3": "Summarize this text: " + "The stack runs on one small VM. " * 300,  # ~10K characters
    "gemini-2": "What's 2+2?",
}
GEMINI_MAX_SECONDS = 0.5
GEMINI_MAX_COST = 0.001


def verify(target: Target) -> list[Check]:
    checks: list[Check] = []
    costs: dict[str, float] = {}
    traces: dict[str, str] = {}
    for model, prompt in PROMPTS.items():
        trace_id = new_trace_id(NUMBER)

        def probe(model: str = model, prompt: str = prompt, trace_id: str = trace_id) -> Check:
            response, seconds = target.chat(model, prompt, metadata={"trace_id": trace_id})
            if response.status_code != 200:
                return Check(f"{model} answers", False, f"answered {response.status_code}: {response.text[:200]}")
            cost = float(response.headers.get("x-litellm-response-cost") or 0)
            tokens = int(response.json().get("usage", {}).get("total_tokens") or 0)
            costs[model] = cost / tokens * 1000 if tokens else 0.0
            traces[model] = trace_id
            detail = f"{seconds:.2f} s, ${cost:.6f} for {tokens} tokens"
            if model == "gemini-2" and (seconds > target.limit(GEMINI_MAX_SECONDS) or cost > GEMINI_MAX_COST):
                over = f"over {target.limit(GEMINI_MAX_SECONDS):g} s or ${GEMINI_MAX_COST}"
                return Check(f"{model} answers", False, f"{detail}: {over}")
            return Check(f"{model} answers", True, detail)

        checks.append(guarded(f"{model} answers", probe))
    missing = [m for m, t in traces.items() if wait_for_trace(target, t, lambda tr: bool(generations(tr)), 10) is None]
    checks.append(
        Check(
            "three traces",
            len(traces) == 3 and not missing,
            f"traced: {', '.join(m for m in traces if m not in missing) or 'none'}",
        )
    )
    ranked = len(costs) == 3 and costs["gpt-4"] > costs["claude-3"] > costs["gemini-2"]
    per_1k = ", ".join(f"{m} ${c:.5f}" for m, c in costs.items())
    checks.append(Check("cost ranking", ranked, f"cost per 1K tokens (prompts differ in size): {per_1k}"))
    return checks
