"""Slice 1: LiteLLM set up, answering for the three models."""

from __future__ import annotations

from ops.slices.base import Check, Target, guarded

NUMBER = 1
TITLE = "LiteLLM setup + basic config"
REQUIRES: tuple[int, ...] = ()
SERVICES: tuple[str, ...] = ("redis", "litellm")  # postgres runs already: the journal lives there
FILES: tuple[str, ...] = ("docker-compose.vps.yml", "litellm-config.yaml", "vps.env")
DATABASES: tuple[str, ...] = ("litellm",)
PLAN_MODELS = ("gpt-4", "claude-3", "gemini-2")


def _readiness(target: Target) -> Check:
    import httpx

    response = httpx.get(f"{target.gateway_url}/health/readiness", timeout=10)
    ok = response.status_code == 200
    return Check("readiness", ok, f"/health/readiness answered {response.status_code}")


def _models(target: Target) -> Check:
    import httpx

    response = httpx.get(f"{target.gateway_url}/v1/models", headers={"Authorization": f"Bearer {target.master_key}"}, timeout=10)
    listed = {m["id"] for m in response.json().get("data", [])} if response.status_code == 200 else set()
    missing = [m for m in PLAN_MODELS if m not in listed]
    detail = f"/v1/models lists {', '.join(sorted(listed)) or 'nothing'}" + (f"; missing {', '.join(missing)}" if missing else "")
    return Check("models listed", response.status_code == 200 and not missing, detail)


def _answers(target: Target) -> Check:
    response, _ = target.chat("gpt-4", "Hello")
    ok = response.status_code == 200 and bool(response.json()["choices"][0]["message"]["content"])
    return Check("gpt-4 answers", ok, f"chat completion answered {response.status_code}")


def verify(target: Target) -> list[Check]:
    return [
        guarded("readiness", lambda: _readiness(target)),
        guarded("models listed", lambda: _models(target)),
        guarded("gpt-4 answers", lambda: _answers(target)),
    ]
