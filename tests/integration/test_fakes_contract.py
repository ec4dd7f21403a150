"""The contract fakes refuse what the real services refuse, in the real services' error shapes.

A fake that accepts anything lets a test pass against a request the real
service would refuse. Each refusal here is checked next to the same request
made valid, so the refusal is for the reason named and nothing else. What
each fake does not check is in its module docstring (docs/TESTING.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import httpx
import openai
import pytest

from ops.backup.context import BackupContext
from ops.backup.manifest import Entry
from ops.backup.pipeline import Producer
from ops.backup.sources import qdrant as qdrant_source
from ops.errors import OpsError
from ops.local.mock_provider import MODELS
from ops.local.processes import MockProviderServer
from tests.fakes.langfuse import make_app as make_langfuse
from tests.fakes.llm import MockControl
from tests.fakes.qdrant import QdrantState, qdrant_app
from tests.fakes.server import ThreadedServer

pytestmark = pytest.mark.integration

KEY = "mock-key"
ANTHROPIC_VERSION = "2023-06-01"  # source: Anthropic API versioning (the version LiteLLM and the SDKs send)


@pytest.fixture
def mock(mock_provider: MockProviderServer) -> MockProviderServer:
    MockControl(mock_provider.url).reset()
    return mock_provider


# The LLM providers (ops/local/mock_provider.py)


def openai_client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=KEY, base_url=base_url, max_retries=0, timeout=10)


def test_openai_answers_404_model_not_found_for_a_model_it_does_not_serve(mock: MockProviderServer) -> None:
    client = openai_client(f"{mock.url}/v1")
    messages: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as refused:  # the real SDK reads the mock's error as OpenAI's
        client.chat.completions.create(model="gpt-4-nonexistent", messages=messages)
    assert refused.value.status_code == 404 and refused.value.code == "model_not_found"
    assert "The model `gpt-4-nonexistent` does not exist" in refused.value.message
    (served,) = MODELS["openai"]
    assert client.chat.completions.create(model=served, messages=messages).choices[0].message.content


def test_openrouter_answers_400_for_a_model_id_it_does_not_know(mock: MockProviderServer) -> None:
    client = openai_client(f"{mock.url}/api/v1")
    messages: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.BadRequestError, match="claude-sonnet-5 is not a valid model ID"):
        client.chat.completions.create(model="claude-sonnet-5", messages=messages)  # OpenRouter wants anthropic/...
    assert client.chat.completions.create(model="anthropic/claude-opus-5", messages=messages).choices


def anthropic_request(
    mock: MockProviderServer,
    *,
    model: str = "claude-sonnet-5",
    max_tokens: int | None = 64,
    version: str | None = ANTHROPIC_VERSION,
) -> httpx.Response:
    headers = {"x-api-key": KEY, **({"anthropic-version": version} if version else {})}
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return httpx.post(f"{mock.url}/v1/messages", headers=headers, json=body, timeout=10)


@pytest.mark.parametrize(
    ("case", "status", "kind", "message"),
    [
        ({"model": "claude-2"}, 404, "not_found_error", "model: claude-2"),
        ({"max_tokens": None}, 400, "invalid_request_error", "max_tokens: Field required"),
        ({"version": None}, 400, "invalid_request_error", "anthropic-version: header is required"),
    ],
)
def test_anthropic_refuses_what_the_messages_api_refuses(
    mock: MockProviderServer, case: dict[str, Any], status: int, kind: str, message: str
) -> None:
    refused = anthropic_request(mock, **case)
    assert refused.status_code == status
    assert refused.json() == {"type": "error", "error": {"type": kind, "message": message}}
    answered = anthropic_request(mock)
    assert answered.status_code == 200 and answered.json()["content"][0]["text"].startswith("[mock anthropic claude-sonnet-5]")


def test_gemini_answers_404_not_found_for_a_model_it_does_not_serve(mock: MockProviderServer) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}

    def generate(model: str) -> httpx.Response:
        return httpx.post(f"{mock.url}/v1beta/models/{model}:generateContent", params={"key": KEY}, json=body, timeout=10)

    refused = generate("gemini-pro")
    assert refused.status_code == 404
    error = refused.json()["error"]
    assert (error["code"], error["status"]) == (404, "NOT_FOUND")
    assert error["message"].startswith("models/gemini-pro is not found for API version v1beta")
    assert generate("gemini-3.1-flash-lite").json()["candidates"][0]["content"]["parts"][0]["text"]


def test_a_refused_model_is_still_recorded_as_a_call(mock: MockProviderServer) -> None:
    """A failover test counts the provider's calls: a refused one reached the provider, as a real one would."""
    anthropic_request(mock, model="claude-2")
    assert [(c["provider"], c["model"]) for c in MockControl(mock.url).calls()] == [("anthropic", "claude-2")]


# Qdrant (tests/fakes/qdrant.py)


@pytest.fixture
def qdrant() -> Iterator[tuple[ThreadedServer, QdrantState]]:
    state = QdrantState(api_key="qdrant-key")
    state.collections["memories"] = {str(i): {"vector": [i / 10, 0.5], "payload": {"n": i}} for i in range(20)}
    with ThreadedServer(qdrant_app(state)) as server:
        yield server, state


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/collections/nope/points"),
        ("POST", "/collections/nope/snapshots"),
        ("GET", "/collections/nope/snapshots"),
        ("GET", "/collections/nope/snapshots/nope-1.snapshot"),
        ("DELETE", "/collections/nope/snapshots/nope-1.snapshot"),
    ],
)
def test_qdrant_answers_404_for_a_missing_collection(qdrant: tuple[ThreadedServer, QdrantState], method: str, path: str) -> None:
    server, _ = qdrant
    headers = {"api-key": "qdrant-key"}
    response = httpx.request(method, server.url + path, headers=headers, timeout=10)
    assert response.status_code == 404
    body = response.json()
    assert body["status"] == {"error": "Not found: Collection `nope` doesn't exist!"}
    assert isinstance(body["time"], float) and "result" not in body  # Qdrant's ApiResponse leaves out a None result
    existing = httpx.request(method, server.url + path.replace("nope", "memories", 1), headers=headers, timeout=10)
    assert "doesn't exist" not in existing.text  # the same route on a collection that exists: the collection was the reason


class Collect:
    """An Emit that reads each producer to the end, as a backup's upload would, and keeps nothing."""

    deadline = float("inf")

    def __call__(self, name: str, producer: Producer, meta: dict[str, Any] | None = None) -> Entry:
        assert callable(producer)
        data = b"".join(producer())
        return Entry("qdrant", name, name, len(data), hashlib.sha256(data).hexdigest(), 0.0, meta or {})


def test_qdrant_can_report_a_checksum_the_snapshot_does_not_have(qdrant: tuple[ThreadedServer, QdrantState]) -> None:
    server, state = qdrant
    # the Qdrant source reads only the URL and the key of the backup context
    ctx = cast(BackupContext, SimpleNamespace(qdrant_url=server.url, qdrant_api_key=state.api_key))
    qdrant_source.backup(ctx, Collect())  # the checksum Qdrant reports matches: the download passes
    state.bad_checksum = True
    with pytest.raises(OpsError, match=r"Qdrant snapshot /collections/memories/snapshots/\S+: sha256 \w+ differs from Qdrant's"):
        qdrant_source.backup(ctx, Collect())
    assert state.snapshots == {}  # the refused snapshot was deleted on the server all the same


# Langfuse (tests/fakes/langfuse.py)


@pytest.fixture
def langfuse() -> Iterator[ThreadedServer]:
    with ThreadedServer(make_langfuse("pk-lf-test", "sk-lf-test")) as server:
        yield server


def ingest(
    langfuse: ThreadedServer, content: bytes, content_type: str, keys: tuple[str, str] = ("pk-lf-test", "sk-lf-test")
) -> httpx.Response:
    headers = {"Content-Type": content_type}
    return httpx.post(f"{langfuse.url}/api/public/ingestion", content=content, headers=headers, auth=keys, timeout=10)


def test_langfuse_answers_400_to_a_body_that_is_not_json(langfuse: ThreadedServer) -> None:
    broken = ingest(langfuse, b'{"batch": [', "application/json")
    assert (broken.status_code, broken.text) == (400, "Invalid JSON")  # Next.js's parser, before authentication
    assert ingest(langfuse, b'{"batch": [', "application/json", keys=("pk-lf-test", "wrong")).status_code == 400
    text = ingest(langfuse, b"not json at all", "text/plain")
    assert text.status_code == 400
    assert text.json() == {"message": "Invalid request data", "errors": ["Expected object, received string"]}
    assert ingest(langfuse, b'{"batch": []}', "application/json").status_code == 207


def test_langfuse_answers_400_to_json_without_a_batch(langfuse: ThreadedServer) -> None:
    missing = ingest(langfuse, b'{"events": []}', "application/json")
    assert (missing.status_code, missing.json()) == (400, {"message": "Invalid request data", "errors": ["Required"]})
    wrong_type = ingest(langfuse, b'{"batch": "x"}', "application/json")
    assert wrong_type.json()["errors"] == ["Expected array, received string"]
    assert ingest(langfuse, b'{"events": []}', "application/json", keys=("pk-lf-test", "wrong")).status_code == 401
