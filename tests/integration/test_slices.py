"""Slices 1, 2, 3 and 5 verify the plan's success criteria against a running gateway and Langfuse."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops import tools
from ops.config import load_settings
from ops.errors import OpsError, ServiceError
from ops.journal import Psql
from ops.local.processes import LiteLLMServer, MockProviderServer, PostgresServer, RedisServer, free_port
from ops.runtime.compose import Compose
from ops.secrets import init_secrets
from ops.slices import engine, run_verify
from ops.slices.base import Target
from tests.conftest import REPO
from tests.fakes.langfuse import make_app as make_langfuse
from tests.fakes.llm import MockControl
from tests.fakes.server import ThreadedServer
from tests.integration.test_gateway import LANGFUSE_KEYS, gateway_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(mock_provider: MockProviderServer) -> Iterator[tuple[LiteLLMServer, ThreadedServer]]:
    with (
        RedisServer() as redis,
        ThreadedServer(make_langfuse(*LANGFUSE_KEYS)) as langfuse,
        LiteLLMServer(REPO / "litellm-config.yaml", gateway_env(mock_provider, redis, langfuse.url)) as gateway,
    ):
        yield gateway, langfuse


@pytest.fixture
def target(stack: tuple[LiteLLMServer, ThreadedServer], mock_provider: MockProviderServer) -> Target:
    control = MockControl(mock_provider.url)
    control.reset()
    gateway, langfuse = stack

    @contextlib.contextmanager
    def break_openai() -> Iterator[None]:
        control.set("openai", reject_keys=["mock-openai-key"])
        try:
            yield
        finally:
            control.set("openai")

    # the plan's "within N s" are the operator's checks (unit-tested), not timings on a loaded machine
    return Target(gateway.url, gateway.master_key, langfuse.url, *LANGFUSE_KEYS, break_openai=break_openai, time_factor=20)


@pytest.mark.parametrize("number", [1, 2, 3, 5])
def test_slice_passes_on_a_healthy_stack(target: Target, number: int) -> None:
    report = run_verify(number, target)
    assert report.ok, report.to_dict()


def test_slice_5_breaks_the_key_only_for_the_drill(target: Target, mock_provider: MockProviderServer) -> None:
    control = MockControl(mock_provider.url)
    assert run_verify(5, target).ok
    assert [c["provider"] for c in control.calls()][:2] == ["openai", "anthropic"]
    control.reset()
    assert run_verify(1, target).ok  # OpenAI answers again afterwards
    assert {c["provider"] for c in control.calls()} == {"openai"}


def test_slice_5_without_a_drill_says_how_to_run_it(stack: tuple[LiteLLMServer, ThreadedServer]) -> None:
    gateway, langfuse = stack
    report = run_verify(5, Target(gateway.url, gateway.master_key, langfuse.url, *LANGFUSE_KEYS))
    assert not report.ok and "make slice-5" in report.checks[0].detail


def test_slice_1_fails_naming_the_failed_criterion(mock_provider: MockProviderServer) -> None:
    control = MockControl(mock_provider.url)
    control.reset()
    for provider in ("openai", "anthropic", "gemini", "openrouter"):
        control.set(provider, status=500)
    with (
        RedisServer() as redis,
        LiteLLMServer(REPO / "litellm-config.yaml", gateway_env(mock_provider, redis, "http://127.0.0.1:9")) as gateway,
    ):
        report = run_verify(1, Target(gateway.url, gateway.master_key, "http://127.0.0.1:9", *LANGFUSE_KEYS))
    control.reset()
    failed = [c.name for c in report.checks if not c.ok]
    assert failed == ["gpt-4 answers"]


def test_slice_2_fails_when_langfuse_rejects_the_keys(stack: tuple[LiteLLMServer, ThreadedServer]) -> None:
    gateway, langfuse = stack
    wrong = Target(gateway.url, gateway.master_key, langfuse.url, "pk-lf-wrong", "sk-lf-wrong")
    report = run_verify(2, wrong)
    assert not report.ok
    assert "no trace" in report.checks[0].detail


def test_unreachable_gateway_is_a_failed_check_not_a_crash(stack: tuple[LiteLLMServer, ThreadedServer]) -> None:
    _, langfuse = stack
    nowhere = Target(f"http://127.0.0.1:{free_port()}", "sk-x", langfuse.url, *LANGFUSE_KEYS, timeout=3)
    report = run_verify(1, nowhere)
    assert not report.ok
    assert all("ConnectError" in c.detail for c in report.checks)


def test_a_failed_dump_leaves_no_snapshot_a_rollback_could_pick(postgres: PostgresServer, project: Path) -> None:
    """Postgres is real and the database exists; the dump goes through a Docker engine that is not there, and fails."""
    database = f"snap_{uuid.uuid4().hex[:8]}"
    psql = Psql((tools.postgres_bin("psql") or "psql", postgres.dsn()))
    psql.query(f'CREATE DATABASE "{database}";')
    try:
        settings = load_settings(project)
        init_secrets(settings.env_example, settings.env_file)
        settings = load_settings(project)
        no_engine = dataclasses.replace(Compose.for_settings(settings), docker_host=f"unix://{project}/no-engine.sock")
        target = Target("http://127.0.0.1:9", "sk-x", "http://127.0.0.1:9", "pk", "sk")
        runtime = engine.Runtime(settings, no_engine, psql, target)
        plan = engine.Plan(1, "t", (), (), ("litellm-config.yaml",), (database,))
        with pytest.raises(ServiceError, match="unreachable"):
            engine.take_snapshot(runtime, plan, "apply")
        assert list(settings.snapshots_dir.iterdir()) == []  # neither the half-written snapshot nor its .partial
        with pytest.raises(OpsError, match="slice 1 has no snapshot to roll back to"):
            engine.latest_snapshot(settings, 1)
    finally:
        psql.query(f'DROP DATABASE "{database}" WITH (FORCE);')
