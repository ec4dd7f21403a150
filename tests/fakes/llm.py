"""Drive the mock LLM provider's failure knobs and read the calls it received.

The providers' wire formats (OpenAI and OpenRouter chat completions,
Anthropic messages, Gemini generateContent, each with streaming) are served
by ``ops.local.mock_provider``; see its docstring for what it skips.
"""

from __future__ import annotations

from typing import Any

import httpx


class MockControl:
    def __init__(self, url: str) -> None:
        self.url = url

    def reset(self) -> None:
        httpx.post(f"{self.url}/__mock/reset", timeout=5).raise_for_status()

    def set(self, provider: str, **behaviour: Any) -> None:
        """Set one provider's behaviour: latency_ms, status, hang, reject_keys, completion_tokens."""
        httpx.post(f"{self.url}/__mock/behaviour", json={"provider": provider, **behaviour}, timeout=5).raise_for_status()

    def calls(self, provider: str | None = None) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = httpx.get(f"{self.url}/__mock/calls", timeout=5).json()
        return [c for c in calls if provider in (None, c["provider"])]
