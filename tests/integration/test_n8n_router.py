"""The routing workflow on the real n8n 2.40.7 (Node 24, Postgres 18) with the real LiteLLM and the mock providers.

One n8n for the module (its first start migrates its database). It gets the
workflow the way `make slice-4` does: the slice engine's apply, with slice 4's
own deploy (n8n's CLI: import, publish, restart) and verify, its snapshot a
real pg_dump of n8n's database. The only difference from the VPS is where the
CLI runs (ops.workflows.n8n.LocalN8n instead of a one-off compose container)
and that n8n is a local process, not a compose service: the test stops and
starts it around the rollback, where the engine runs `docker compose rm` and
`up`. Traces go to the Langfuse contract fake.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx
import pytest

from ops import tools
from ops.backup.context import PostgresAccess
from ops.config import Settings, load_settings
from ops.envfile import read_env_file
from ops.journal import Psql
from ops.local.demo import create_app_databases
from ops.local.processes import LiteLLMServer, MockProviderServer, N8nServer, PostgresServer, RedisServer, wait_until
from ops.runtime.compose import Compose
from ops.secrets import init_secrets
from ops.slices import engine, run_verify, slice_04
from ops.slices.base import Target
from ops.workflows import router
from ops.workflows.n8n import LocalN8n, published
from tests.conftest import PROJECT_FILES, REPO, require
from tests.fakes.langfuse import make_app as make_langfuse
from tests.fakes.llm import MockControl
from tests.fakes.server import ThreadedServer
from tests.integration.test_gateway import LANGFUSE_KEYS, gateway_env

pytestmark = pytest.mark.integration
PROVIDERS = ("openai", "anthropic", "gemini", "openrouter")


@dataclass
class Stack:
    settings: Settings
    n8n: N8nServer
    gateway: LiteLLMServer
    langfuse: ThreadedServer
    postgres: PostgresServer
    control: MockControl
    secret: str
    applied: engine.ApplyReport | None = None

    @property
    def url(self) -> str:
        return f"{self.n8n.url}/webhook/{router.WEBHOOK_PATH}"

    @property
    def target(self) -> Target:
        return Target(
            self.gateway.url,
            self.gateway.master_key,
            self.langfuse.url,
            *LANGFUSE_KEYS,
            settings=self.settings,
            n8n_url=self.n8n.url,
            webhook_key=self.secret,
            # "answers within 3 s" is a verify check for the operator, not a timing assertion on a loaded machine
            time_factor=40,
        )

    def runtime(self) -> engine.Runtime:
        journal = Psql((tools.postgres_bin("psql") or "psql", self.postgres.dsn()))
        access = PostgresAccess.from_url(self.postgres.dsn().rsplit("/", 1)[0])
        return engine.Runtime(
            self.settings, Compose.for_settings(self.settings), journal, self.target, access, n8n=LocalN8n(self.n8n)
        )

    def post(self, body: Any = None, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {router.WEBHOOK_HEADER: self.secret if key is None else key, **kwargs.pop("headers", {})}
        if body is not None:
            kwargs["json"] = body
        return httpx.post(self.url, headers=headers, timeout=120, **kwargs)


def docker_free_slice_4() -> ModuleType:
    """Slice 4 as the engine sees it, but with n8n a local process: no compose service to bring up or stop."""
    module = ModuleType("slice_04_local")
    for name in ("NUMBER", "TITLE", "FILES", "DATABASES", "deploy", "verify"):
        setattr(module, name, getattr(slice_04, name))
    setattr(module, "REQUIRES", ())  # noqa: B010 - slice 3 is tested in test_slices.py
    setattr(module, "SERVICES", ())  # noqa: B010 - n8n is a process here, not a compose service
    return module


def apply(stack: Stack) -> engine.ApplyReport:
    """`make slice-4`'s apply on the local n8n."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "get_slice", lambda number: docker_free_slice_4())
        return engine.run_apply(stack.runtime(), 4)


@pytest.fixture(scope="module")
def stack(mock_provider: MockProviderServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    found = tools.n8n_install()
    require(found, f"n8n {tools.N8N_VERSION} in {tools.cache_dir()} (make clients runs scripts/install-n8n.sh)")
    assert found is not None
    node, n8n_dir = found
    project = tmp_path_factory.mktemp("slice4") / "project"
    project.mkdir()
    for name in (*PROJECT_FILES, "routing-rules.yaml", "workflows"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, project / name)
    init_secrets(project / "vps.env.example", project / "vps.env")
    env = read_env_file(project / "vps.env")
    with contextlib.ExitStack() as started, ThreadPoolExecutor(1) as pool:
        postgres = started.enter_context(PostgresServer())
        passwords = create_app_databases(REPO, postgres)
        n8n = N8nServer(node, n8n_dir, postgres, passwords["n8n"])
        started.callback(n8n.stop)
        booting = pool.submit(n8n.start)  # its first start migrates its database: meanwhile the gateway starts
        redis = started.enter_context(RedisServer())
        langfuse = started.enter_context(ThreadedServer(make_langfuse(*LANGFUSE_KEYS)))
        gateway_vars = {**gateway_env(mock_provider, redis, langfuse.url), "LITELLM_MASTER_KEY": env["LITELLM_MASTER_KEY"]}
        gateway = started.enter_context(LiteLLMServer(REPO / "litellm-config.yaml", gateway_vars))
        vps_env = project / "vps.env"  # the gateway as n8n reaches it here: loopback, not the compose name
        vps_env.write_text(
            vps_env.read_text().replace("OPS_N8N_GATEWAY_URL=http://litellm:4000", f"OPS_N8N_GATEWAY_URL={gateway.url}")
        )
        booting.result()
        control = MockControl(mock_provider.url)
        control.reset()
        stack = Stack(load_settings(project), n8n, gateway, langfuse, postgres, control, env["N8N_WEBHOOK_SECRET"])
        stack.applied = apply(stack)
        yield stack


@pytest.fixture
def control(stack: Stack) -> MockControl:
    stack.control.reset()
    return stack.control


def test_slice_4_apply_imports_the_workflow_and_its_credentials_and_verifies(stack: Stack) -> None:
    report = stack.applied
    assert report is not None and report.outcome == "ok", report and [c.to_dict() for c in report.checks if not c.ok]
    assert report.changed == [
        "n8n credential 'aistack router webhook key'",
        "n8n credential 'aistack LiteLLM key'",
        "n8n workflow 'LiteLLM router' imported",
        "n8n workflow 'LiteLLM router' published",
        "n8n restarted to serve it",
    ]
    exported = LocalN8n(stack.n8n).export("workflow", router.WORKFLOW_ID)
    assert exported is not None and published(exported[0])
    assert {c.name for c in report.checks} == {
        "routing table",
        "reason in each answer",
        "answers within 3 s",
        "webhook needs its key",
        "trace in Langfuse",
    }


@pytest.mark.parametrize(
    ("task", "model", "served_by", "reason"),
    [
        ("Explain AI", "gpt-4", "gpt-5.4-2026-03-05", "Complex reasoning"),
        ("2+2=?", "gemini-2", "gemini-3.1-flash-lite", "Simple/fast"),
        ("x" * 60_000, "claude-3", "claude-sonnet-5", "Long context (over 50,000 characters)"),
    ],
    ids=["explain", "arithmetic", "60000-characters"],
)
def test_the_plan_table_routes_and_says_why(
    stack: Stack, control: MockControl, task: str, model: str, served_by: str, reason: str
) -> None:
    response = stack.post({"task": task})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["model"], answer["reason"], answer["fallbacks"]) == (model, reason, 0)
    assert served_by in answer["served_by"]
    assert answer["answer"].endswith(f"You said: {task}")
    assert isinstance(answer["latency_ms"], int) and answer["latency_ms"] >= 0
    assert [c["model"] for c in control.calls()] == [served_by]


def test_a_model_asked_for_overrides_the_route(stack: Stack, control: MockControl) -> None:
    response = stack.post({"task": "Explain AI", "model": "cheap"})
    assert response.status_code == 200, response.text
    assert (response.json()["model"], response.json()["reason"]) == ("cheap", "Asked for by the caller")
    assert [c["provider"] for c in control.calls()] == ["openrouter"]


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({}, 400, 'no "task"'),
        ({"task": 42}, 400, '"task" must be a string, got a number'),
        ({"task": ["a"]}, 400, '"task" must be a string, got an array'),
        ({"task": "   "}, 400, '"task" is empty'),
        (["task"], 400, "must be a JSON object"),
        ({"task": "y" * 200_001}, 413, "over the limit of 200000"),
        ({"task": "hi", "model": "gpt-5"}, 400, '"model" must be one of'),
    ],
    ids=["no-task", "number", "array", "blank", "not-an-object", "over-200KB", "unknown-model"],
)
def test_bad_input_is_a_4xx_naming_the_problem(stack: Stack, control: MockControl, body: Any, status: int, names: str) -> None:
    response = stack.post(body)
    assert response.status_code == status, response.text
    assert names in response.json()["error"]
    assert control.calls() == []  # refused before any model was asked


@pytest.mark.parametrize(
    ("content", "content_type", "status", "names"),
    [
        # n8n parses application/json itself and refuses a malformed body with 422 (without its stack trace:
        # NODE_ENV=production, as in the image)
        (b'{"task": "Explain', "application/json", 422, "Failed to parse request body"),
        (b"Explain AI", "text/plain", 400, "the body is not JSON"),
        # curl -d without -H sends a form: n8n would split a task at its '=' and '&'
        (b'{"task": "2+2=?"}', "application/x-www-form-urlencoded", 415, "Content-Type: application/json"),
    ],
    ids=["malformed-json", "plain-text", "form"],
)
def test_a_body_that_is_not_json_is_refused_without_a_stack_trace(
    stack: Stack, control: MockControl, content: bytes, content_type: str, status: int, names: str
) -> None:
    response = stack.post(content=content, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    assert names in response.text
    assert "stacktrace" not in response.text and "node_modules" not in response.text and "\n    at " not in response.text
    assert control.calls() == []


@pytest.mark.parametrize("key", ["", "wrong-key"], ids=["missing", "wrong"])
def test_the_webhook_needs_its_key(stack: Stack, control: MockControl, key: str) -> None:
    response = httpx.post(stack.url, json={"task": "Explain AI"}, headers={router.WEBHOOK_HEADER: key} if key else {}, timeout=60)
    assert response.status_code in (401, 403)
    assert "answer" not in response.text
    assert control.calls() == []  # not an open LLM proxy


def test_the_trace_names_the_route_the_reason_and_the_model(stack: Stack, control: MockControl) -> None:
    answer = stack.post({"task": "Explain AI"}).json()
    trace: dict[str, Any] = {}

    def generation_arrived() -> bool:  # LiteLLM sends traces in the background, after the answer
        response = httpx.get(f"{stack.langfuse.url}/api/public/traces/{answer['trace_id']}", auth=LANGFUSE_KEYS)
        trace.update(response.json() if response.status_code == 200 else {})
        return any(o["type"] == "GENERATION" for o in trace.get("observations", []))

    wait_until(generation_arrived, 20, "the trace's generation in Langfuse")
    generations = [o for o in trace.get("observations", []) if o["type"] == "GENERATION"]
    assert [g["model"] for g in generations] == ["openai/gpt-5.4-2026-03-05"]
    assert trace["name"] == "n8n litellm-route"
    assert {"route:gpt-4", "rule:reasoning", "reason:Complex reasoning"} <= set(trace["tags"])


def test_slice_4_verify_names_a_wrong_webhook_key(stack: Stack) -> None:
    report = run_verify(4, dataclasses.replace(stack.target, webhook_key="not-the-key"))
    assert not report.ok
    table = next(c for c in report.checks if c.name == "routing table")
    assert not table.ok and "answered 403" in table.detail


def test_n8n_restarted_keeps_the_workflow_and_a_second_apply_changes_nothing(stack: Stack, control: MockControl) -> None:
    LocalN8n(stack.n8n).restart(router.WEBHOOK_PATH)  # stop, start, wait until the webhook is served again
    response = stack.post({"task": "2+2=?"})
    assert response.status_code == 200, response.text
    again = apply(stack)
    assert (again.outcome, again.changed) == ("unchanged", []), again.to_dict()


def test_a_failing_deployment_falls_back_visibly(stack: Stack, control: MockControl) -> None:
    control.set("openai", status=500)
    response = stack.post({"task": "Explain AI"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == "gpt-4" and "claude-sonnet-5" in answer["served_by"] and answer["fallbacks"] >= 1
    assert answer["answer"].startswith("[mock anthropic claude-sonnet-5]")


def test_every_model_failing_is_a_502_with_the_last_error_in_one_line(stack: Stack, control: MockControl) -> None:
    for provider in PROVIDERS:  # a refused key: no retries, straight down the chain (a 500 is retried first)
        control.set(provider, reject_keys=[f"mock-{provider}-key"])
    response = stack.post({"task": "2+2=?"})
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error.startswith("every model failed: ") and "\n" not in error and len(error) <= 420
    assert response.json()["model"] == "gemini-2"


def test_ops_health_finds_n8n_and_its_gateway_ready(stack: Stack) -> None:
    """`ops health` asks the real n8n its readiness (OPS_N8N_URL: its loopback port here, Caddy by name on the VM)."""
    from ops.health import run_health

    env = {**stack.settings.env, "OPS_N8N_URL": stack.n8n.url, "OPS_GATEWAY_URL": stack.gateway.url}
    report = run_health(dataclasses.replace(stack.settings, env=env), only=("n8n", "litellm"), timeout=10)

    assert report.ok, report.to_dict()
    assert report.results[1].detail == f'ready ({stack.n8n.url}/healthz/readiness: {{"status":"ok"}})'


def test_a_rollback_removes_the_workflow_and_its_credentials(stack: Stack) -> None:
    """Last: it takes the workflow away. n8n is stopped and started around it, as the engine does with compose."""
    stack.n8n.halt()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "get_slice", lambda number: docker_free_slice_4())
        report = engine.run_rollback(stack.runtime(), 4)
    stack.n8n.start()
    assert "restored database n8n" in report.steps
    local = LocalN8n(stack.n8n)
    assert local.export("workflow", router.WORKFLOW_ID) is None
    assert all(local.export("credentials", c["id"]) is None for c in (router.WEBHOOK_CREDENTIAL, router.GATEWAY_CREDENTIAL))
    assert stack.post({"task": "2+2=?"}).status_code == 404
    with contextlib.suppress(Exception):
        stack.control.reset()
