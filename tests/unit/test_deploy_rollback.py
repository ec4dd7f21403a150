"""`ops deploy`'s rollback without Docker: it runs whatever the journal (in the stack's own Postgres) can record, on
SIGTERM too; it recreates every service that differs from the restored files, with the restored vps.env's secrets,
gated on the services that were healthy before; what a record may name; which records are kept.

The stack is a contract fake (FakeStack: compose's hashes and Docker's image ids as deploy reads them); the journal
is a fake whose writes fail the way psql does when the deploy crashed Postgres. On Docker:
tests/stack/test_deploy_on_docker.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ops import deploy
from ops.config import Settings, load_settings
from ops.deploy import DeployPlan, DeployReport, Running, ServiceAction, ServiceSpec
from ops.errors import ConfigError, OpsError, ServiceError
from ops.health import HealthReport
from ops.health.base import ProbeResult
from ops.interrupts import Interrupted
from ops.secrets import init_secrets
from ops.slices import engine
from tests.unit.cli import run_ops


@pytest.fixture
def settings(project: Path) -> Settings:
    settings = load_settings(project)
    init_secrets(settings.env_example, settings.env_file)
    return load_settings(project)


@dataclass
class FakeCompose:
    """compose as deploy asks it: the hash each service's configuration has now, up and rm recorded."""

    hashes: dict[str, str]
    ups: list[tuple[list[str], bool]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def config_hashes(self, services: list[str]) -> dict[str, str]:
        return {s: self.hashes[s] for s in services if s in self.hashes}

    def up(self, services: list[str], timeout: int = 300, force_recreate: bool = False) -> None:
        self.ups.append((list(services), force_recreate))

    def stop_and_remove(self, services: list[str]) -> None:
        self.removed += services


@dataclass
class FakeStack:
    """The containers (hash and image they run) and the image each reference names on the engine."""

    compose: FakeCompose
    containers: dict[str, Running]
    references: dict[str, str] = field(default_factory=dict)
    tagged: list[tuple[str, str]] = field(default_factory=list)

    def running(self) -> dict[str, Running]:
        return dict(self.containers)

    def image_id(self, reference: str) -> str | None:
        return self.references.get(reference)

    def container_image(self, container_id: str) -> tuple[str, str]:
        name = next(n for n, c in self.containers.items() if c.container_id == container_id)
        return f"{name}:1", self.containers[name].image_id

    def tag(self, image_id: str, reference: str) -> None:
        self.tagged.append((image_id, reference))
        self.references[reference] = image_id


class BrokenJournal:
    """The journal while the deploy has Postgres crash-looping: the row was started, every later write fails."""

    def __init__(self) -> None:
        self.finished: list[tuple[str, str]] = []

    def start(self, slice_number: int | None, action: str, plan_hash: str = "") -> int:
        return 7

    def mark(self, entry_id: int, outcome: str, detail: str = "") -> None:
        raise ServiceError("psql failed: service postgres is restarting")

    def finish(self, entry_id: int, outcome: str, detail: str = "") -> None:
        raise ServiceError("psql failed: service postgres is restarting")


class Journal(BrokenJournal):
    def mark(self, entry_id: int, outcome: str, detail: str = "") -> None:
        pass

    def finish(self, entry_id: int, outcome: str, detail: str = "") -> None:
        self.finished.append((outcome, detail))


SPECS = [ServiceSpec("litellm", "litellm:1", False, ("litellm-config.yaml",)), ServiceSpec("redis", "redis:1", False, ())]


def running(**hashes: str) -> dict[str, Running]:
    return {name: Running(f"c-{name}", True, f"sha256:{name}", h) for name, h in hashes.items()}


def first_deploy(settings: Settings) -> None:
    """A healthy deploy recorded: litellm-config.yaml 'good', vps.env as init_secrets wrote it."""
    (settings.project_dir / "litellm-config.yaml").write_text("good\n")
    stack = FakeStack(FakeCompose({}), {})
    first = deploy._save_record(settings, DeployPlan("aistack", [], {}, False, False), SPECS, {}, stack)  # type: ignore[arg-type]
    deploy._record_deployed(settings, first)


def set_env(settings: Settings, name: str, value: str) -> None:
    text, count = re.subn(rf"^{name}=.*$", f"{name}={value}", settings.env_file.read_text(), flags=re.M)
    assert count == 1
    settings.env_file.write_text(text)


def run_failing_deploy(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    journal: Any,
    failure: BaseException,
    roll_back: Callable[..., list[str]] | None = None,
) -> tuple[DeployReport | None, list[str]]:
    """_deploy whose compose up raises failure, with _roll_back recorded instead of run."""
    first_deploy(settings)
    (settings.project_dir / "litellm-config.yaml").write_text("bad\n")
    rolled: list[str] = []

    def bring_up(*args: object) -> list[str]:
        raise failure

    monkeypatch.setattr(deploy, "_bring_up", bring_up)

    def recorded_roll_back(*args: object, **kwargs: object) -> list[str]:
        rolled.append("rolled back")
        return ["restored x"]

    monkeypatch.setattr(deploy, "_roll_back", roll_back or recorded_roll_back)
    stack = FakeStack(FakeCompose({"litellm": "h", "redis": "h"}), running(litellm="h", redis="h"))
    plan = DeployPlan("aistack", [ServiceAction("litellm", "recreate", ["x"], True)], {}, False, True)
    args = (settings, None, stack, journal, plan, SPECS, stack.running(), 60.0)
    return deploy._deploy(*args), rolled  # type: ignore[arg-type]


def test_a_deploy_that_breaks_postgres_is_rolled_back_though_the_journal_cannot_be_written(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    failure = ServiceError("docker compose up failed: postgres is restarting")
    report, rolled = run_failing_deploy(settings, monkeypatch, BrokenJournal(), failure)
    assert rolled == ["rolled back"]
    assert report is not None and report.outcome == "rolled-back" and report.record.endswith(engine.ROLLED_BACK)
    assert any("the journal could not record rolling-back" in note for note in report.notes)
    assert any("the journal could not record rolled-back" in note for note in report.notes)


def test_sigterm_during_the_deploy_rolls_back_then_stops(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal()
    with pytest.raises(Interrupted):
        run_failing_deploy(settings, monkeypatch, journal, Interrupted(signal.SIGTERM))
    assert journal.finished and journal.finished[0][0] == "interrupted"
    assert "interrupted by SIGTERM during docker compose up" in journal.finished[0][1]
    assert "restored" in journal.finished[0][1]
    assert [p.name.endswith(engine.ROLLED_BACK) for p in deploy.deploys_dir(settings).iterdir()].count(True) == 1


@pytest.fixture
def interrupted_then_failed(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A deploy of a new REDIS_PASSWORD and litellm-config.yaml was killed after compose recreated redis; run
    again, it planned redis unchanged (its container already matches), and failed: now _roll_back runs."""
    first_deploy(settings)
    old_password = load_settings(settings.project_dir).effective_env["REDIS_PASSWORD"]
    set_env(settings, "REDIS_PASSWORD", "rotated-new-password")
    (settings.project_dir / "litellm-config.yaml").write_text("bad\n")
    containers = running(litellm="h-litellm", redis="h-redis-new", caddy="h-caddy", qdrant="h-qdrant")
    stack = FakeStack(FakeCompose({}), containers)
    plan = DeployPlan("aistack", [ServiceAction(s, "unchanged") for s in containers], {}, True, True)
    specs = [*SPECS, ServiceSpec("caddy", "caddy:2", False, ()), ServiceSpec("qdrant", "qdrant:1", False, ())]
    record = deploy._save_record(settings, plan, specs, containers, stack)  # type: ignore[arg-type]
    # after the restore: compose's hash for redis is the old one again; caddy's tag was re-pulled meanwhile
    stack.compose.hashes = {"litellm": "h-litellm", "redis": "h-redis-old", "caddy": "h-caddy", "qdrant": "h-qdrant"}
    stack.containers["caddy"] = Running("c-caddy", True, "sha256:caddy-pulled", "h-caddy")
    seen: dict[str, Any] = {}
    monkeypatch.setattr(deploy, "Stack", lambda compose: stack)
    # the stack's runtime, as for_settings builds it from Settings read after the restore (psql needs Docker here)
    monkeypatch.setattr(engine.Runtime, "for_settings", classmethod(lambda cls, s: SimpleNamespace(settings=s, compose=None)))
    monkeypatch.setattr(deploy, "_gate", lambda s, services, clock: seen.update(gate=(s, services)))
    monkeypatch.setattr(deploy, "_deploy_workflow", lambda runtime: seen.update(workflow=runtime.settings) or [])
    steps = deploy._roll_back(settings, None, stack, record, plan, specs, deploy._Clock(60), ("litellm", "redis", "qdrant"))  # type: ignore[arg-type]
    return {"steps": steps, "stack": stack, "seen": seen, "old_password": old_password}


def test_the_rollback_recreates_every_service_that_differs_from_the_restored_files(
    interrupted_then_failed: dict[str, Any],
) -> None:
    stack = interrupted_then_failed["stack"]
    # redis: its configuration hash; litellm: its mounted file restored; caddy: the image it runs. qdrant matches.
    assert stack.compose.ups == [(["caddy", "litellm", "redis"], True)]


def test_the_rollback_gates_and_deploys_the_workflow_with_the_restored_secrets(interrupted_then_failed: dict[str, Any]) -> None:
    seen, old = interrupted_then_failed["seen"], interrupted_then_failed["old_password"]
    gate_settings, gated = seen["gate"]
    assert gate_settings.effective_env["REDIS_PASSWORD"] == old != "rotated-new-password"
    assert seen["workflow"].effective_env["REDIS_PASSWORD"] == old
    # caddy was running but not healthy before the deploy: the rollback is not gated on it
    assert gated == ["litellm", "qdrant", "redis"]


def test_a_file_recorded_as_deployed_but_no_longer_tracked_is_kept_in_attempted(settings: Settings) -> None:
    project = settings.project_dir
    (project / "clickhouse").mkdir(exist_ok=True)
    (project / "clickhouse" / "low-memory.xml").write_text("<deployed/>\n")
    specs = [*SPECS, ServiceSpec("clickhouse", "clickhouse:1", False, ("clickhouse/low-memory.xml",))]
    stack = FakeStack(FakeCompose({}), {})
    plan = DeployPlan("aistack", [], {}, False, False)
    deploy._record_deployed(settings, deploy._save_record(settings, plan, specs, {}, stack))  # type: ignore[arg-type]
    (project / "clickhouse" / "low-memory.xml").write_text("<edited by hand/>\n")
    record = deploy._save_record(settings, plan, SPECS, {}, stack)  # type: ignore[arg-type]  # langfuse's profile is off now
    assert (record / "attempted" / "clickhouse" / "low-memory.xml").read_text() == "<edited by hand/>\n"
    state = json.loads((record / "state.json").read_text())
    engine.restore_files(project, state["previous"]["files"], state["previous"]["modes"], record / "previous")
    assert (project / "clickhouse" / "low-memory.xml").read_text() == "<deployed/>\n"


def test_a_file_added_since_the_last_deploy_is_removed_by_the_rollback(settings: Settings) -> None:
    project = settings.project_dir
    first_deploy(settings)
    stamp = (deploy.deployed_dir(settings) / "state.json").stat().st_mtime_ns
    (project / "workflows").mkdir()
    (project / "workflows" / "old.json").write_text("{}")  # there before the deploy, though no deploy tracked it
    os.utime(project / "workflows" / "old.json", ns=(stamp - 10**9, stamp - 10**9))
    (project / "workflows" / "new.json").write_text('{"new": 1}')
    record = deploy._save_record(settings, DeployPlan("aistack", [], {}, False, True), SPECS, {}, FakeStack(FakeCompose({}), {}))  # type: ignore[arg-type]
    state = json.loads((record / "state.json").read_text())
    _, removed = engine.restore_files(project, state["previous"]["files"], state["previous"]["modes"], record / "previous")
    assert removed == ["workflows/new.json"] and not (project / "workflows" / "new.json").exists()
    assert (record / "attempted" / "workflows" / "new.json").read_text() == '{"new": 1}'
    assert (project / "workflows" / "old.json").read_text() == "{}" and "workflows/old.json" not in state["unknown"]


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/outside.txt", "linked/x.txt", "link.txt", ""])
def test_a_record_naming_a_file_outside_the_project_is_refused(settings: Settings, tmp_path: Path, name: str) -> None:
    project = settings.project_dir
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    (outside / "x.txt").write_text("not the project's\n")
    (project / "linked").symlink_to(outside)
    (project / "link.txt").symlink_to(outside / "x.txt")
    (project / "routing-rules.yaml").write_text("rules: []\n")
    source = tmp_path / "record"
    (source / "files").mkdir(parents=True)
    with pytest.raises(ConfigError, match=f"a record names the file {re.escape(repr(name))}"):
        engine.restore_files(project, {"routing-rules.yaml": False, name: False}, {}, source / "files")
    assert (outside / "x.txt").read_text() == "not the project's\n"
    assert (project / "routing-rules.yaml").exists()  # refused before anything changed


def test_a_deployed_record_naming_a_file_outside_the_project_is_a_config_error(settings: Settings) -> None:
    directory = deploy.deployed_dir(settings)
    (directory / "files").mkdir(parents=True)
    (directory / "state.json").write_text(json.dumps({"files": {"../../etc/passwd": True}, "modes": {}}))
    with pytest.raises(ConfigError, match=r"'../../etc/passwd', which is not a path inside the project"):
        deploy.recorded_files(settings)


def test_the_records_and_a_restored_vps_env_stay_private(settings: Settings) -> None:
    project = settings.project_dir
    assert settings.env_file.stat().st_mode & 0o777 == 0o600
    first_deploy(settings)
    set_env(settings, "REDIS_PASSWORD", "rotated-new-password")
    record = deploy._save_record(settings, DeployPlan("aistack", [], {}, False, True), SPECS, {}, FakeStack(FakeCompose({}), {}))  # type: ignore[arg-type]
    state = json.loads((record / "state.json").read_text())
    settings.env_file.chmod(0o644)  # as a careless edit may leave it: the rollback gives the recorded mode back
    restored, _ = engine.restore_files(project, state["previous"]["files"], state["previous"]["modes"], record / "previous")
    assert "vps.env" in restored
    for path in (
        record / "previous" / "vps.env",
        record / "attempted" / "vps.env",
        deploy.deployed_dir(settings) / "files" / "vps.env",
        settings.env_file,
    ):
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_rolled_back_records_are_kept_by_age_not_count(settings: Settings) -> None:
    directory = deploy.deploys_dir(settings)
    now = datetime(2026, 11, 30, tzinfo=UTC)
    plain = [f"2026112{i}T000000000000Z-deploy" for i in range(8)]
    recent = (now - timedelta(days=2)).strftime(engine.STAMP) + "-deploy-rolled-back"
    old = (now - timedelta(days=engine.BEFORE_ROLLBACK_DAYS + 1)).strftime(engine.STAMP) + "-deploy-rolled-back"
    for name in [*plain, recent, old, "20261129T000000000000Z-deploy.partial"]:
        (directory / name).mkdir(parents=True)
    notes = deploy._prune(settings, now=now)
    assert sorted(p.name for p in directory.iterdir()) == sorted([*plain[-deploy.KEEP_DEPLOYS :], recent])
    assert notes == [f"deleted {old}: a rolled-back deploy's record is kept {engine.BEFORE_ROLLBACK_DAYS} days"]


def test_a_record_that_cannot_be_renamed_after_the_rollback_is_a_note(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = deploy._save_record

    def save_and_block(*args: Any) -> Path:
        record = original(*args)
        (record.with_name(record.name + engine.ROLLED_BACK) / "in-the-way").mkdir(parents=True)  # rename fails
        return record

    monkeypatch.setattr(deploy, "_save_record", save_and_block)
    report, _ = run_failing_deploy(settings, monkeypatch, Journal(), ServiceError("compose up failed"))
    assert report is not None and report.outcome == "rolled-back" and not report.record.endswith(engine.ROLLED_BACK)
    assert any("could not be renamed" in note for note in report.notes)


def test_a_failed_rollback_exits_3_with_the_report(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = DeployPlan("aistack", [ServiceAction("postgres", "recreate", ["x"])], {}, False, True)
    failed = DeployReport("rollback-failed", plan, "20261124T000000000000Z-deploy", error="the health gate failed: postgres")
    failed.rollback_error = "the health gate failed: postgres (connection refused)"
    monkeypatch.setattr(deploy, "run_deploy", lambda *args, **kwargs: failed)
    ran = run_ops("deploy", "--project-dir", str(settings.project_dir), "--yes", "--json")
    assert ran.returncode == 3
    assert json.loads(ran.stdout)["outcome"] == "rollback-failed"
    text = run_ops("deploy", "--project-dir", str(settings.project_dir), "--yes")
    assert text.returncode == 3 and "ROLLBACK FAILED too: the health gate failed: postgres (connection refused)" in text.stdout


def test_a_rollback_that_fails_is_reported_not_raised(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_rollback(*args: object, **kwargs: object) -> list[str]:
        raise ServiceError("postgres is still down")

    journal = Journal()
    report, _ = run_failing_deploy(settings, monkeypatch, journal, ServiceError("compose up failed"), failing_rollback)
    assert report is not None and report.outcome == "rollback-failed" and report.rollback_error == "postgres is still down"
    assert journal.finished[0][0] == "rollback-failed" and not report.ok


def test_the_baseline_is_the_services_healthy_before_the_deploy(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, ...]] = []

    def health(settings: Settings, *, only: tuple[str, ...] = (), **kwargs: object) -> HealthReport:
        asked.append(only)
        return HealthReport(
            tuple(ProbeResult(name, name != "litellm", 1.0, "503" if name == "litellm" else "ok") for name in only)
        )

    monkeypatch.setattr(deploy, "run_health", health)
    assert deploy._healthy_now(settings, ["postgres", "postgres-init", "litellm", "langfuse-web"]) == ("postgres", "langfuse")
    assert asked == [("postgres", "litellm", "langfuse")]


def test_a_plan_that_changed_since_it_was_confirmed_is_refused() -> None:
    confirmed = DeployPlan(
        "aistack", [ServiceAction("litellm", "recreate", ["litellm-config.yaml changed"], True)], {}, False, True
    )
    deploy.check_approved(confirmed, confirmed.hash)
    deploy.check_approved(confirmed, None)  # --yes
    now = DeployPlan("aistack", [*confirmed.services, ServiceAction("redis", "recreate", ["vps.env changed"])], {}, False, True)
    with pytest.raises(OpsError, match=rf"the plan changed since you confirmed it \(plan {confirmed.hash}, now {now.hash}"):
        deploy.check_approved(now, confirmed.hash)


def test_postgres_is_started_as_it_was_created_before_the_lock_is_held() -> None:
    asked: list[tuple[str, ...]] = []
    compose = SimpleNamespace(run=lambda *args, **kwargs: asked.append(args))
    deploy.start_postgres(compose)  # type: ignore[arg-type]
    assert asked == [("up", "--detach", "--no-recreate", "--wait", "--wait-timeout", "300", "postgres")]


def test_the_first_deploy_records_vps_env_and_compose_when_the_containers_run_them(settings: Settings) -> None:
    containers = running(litellm="h-litellm", redis="h-redis") | {"qdrant": Running("c-q", False, "sha256:q", "h-other")}
    assert deploy.first_deploy_baseline(containers, {"litellm": "h-litellm", "redis": "h-redis", "qdrant": "h-q"})
    assert not deploy.first_deploy_baseline(containers, {"litellm": "h-litellm", "redis": "h-redis-new"})

    plan = DeployPlan("aistack", [], {}, False, False, baseline=True)
    record = deploy._save_record(settings, plan, SPECS, {}, FakeStack(FakeCompose({}), {}))  # type: ignore[arg-type]
    state = json.loads((record / "state.json").read_text())
    assert state["previous"]["files"]["vps.env"] is True and "vps.env" not in state["unknown"]
    assert (record / "previous" / "vps.env").read_bytes() == settings.env_file.read_bytes()

    plan.baseline = False
    record = deploy._save_record(settings, plan, SPECS, {}, FakeStack(FakeCompose({}), {}))  # type: ignore[arg-type]
    assert "vps.env" in json.loads((record / "state.json").read_text())["unknown"]
    assert "a rollback cannot put those two back" in deploy.deploy_text(DeployReport("dry-run", plan))
