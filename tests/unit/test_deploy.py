"""`ops deploy`'s decisions without Docker: which files it records, which services it starts or recreates and why,
what a rollback puts back, and bad input. On Docker: tests/stack/test_deploy_on_docker.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops import deploy
from ops.config import Settings, load_settings
from ops.deploy import (
    DeployPlan,
    DeployReport,
    RecordedFile,
    Running,
    ServiceAction,
    ServiceSpec,
    changed_files,
    decide,
    probes_for,
    read_services,
    recorded_files,
    tracked_files,
)
from ops.errors import ConfigError, OpsError
from ops.runtime.compose import Compose
from ops.secrets import init_secrets
from ops.slices import engine
from tests.unit.cli import run_ops


@pytest.fixture
def settings(project: Path) -> Settings:
    settings = load_settings(project)
    init_secrets(settings.env_example, settings.env_file)
    return load_settings(project)


def bind(source: Path, read_only: bool = True) -> dict[str, object]:
    return {"type": "bind", "source": str(source), "target": "/x", "read_only": read_only}


def test_the_services_mounted_files_are_read_from_compose_config(tmp_path: Path) -> None:
    (tmp_path / "init").mkdir()
    (tmp_path / "init" / "create.sh").write_text("#!/bin/sh\n")
    (tmp_path / "litellm-config.yaml").write_text("model_list: []\n")
    (tmp_path / ".observer-ssh").mkdir()
    (tmp_path / ".observer-ssh" / "id_ed25519").write_text("key")
    (tmp_path / "truth").mkdir()
    config = {
        "name": "aistack",
        "services": {
            "litellm": {
                "image": "litellm:1",
                "restart": "unless-stopped",
                "volumes": [bind(tmp_path / "litellm-config.yaml"), {"type": "volume", "source": "x"}],
            },
            "postgres-init": {"image": "postgres:18", "volumes": [bind(tmp_path / "init")]},
            "observer": {
                "image": "aistack-observer:0.1.0",
                "build": {"context": str(tmp_path)},
                # the truth repository is written (not a config file), the ssh keys are secrets, /etc is not the project's
                "volumes": [
                    bind(tmp_path / "truth", read_only=False),
                    bind(tmp_path / ".observer-ssh"),
                    bind(Path("/etc/hosts")),
                ],
            },
        },
    }
    specs = {s.name: s for s in read_services(config, tmp_path)}
    assert specs["litellm"] == ServiceSpec("litellm", "litellm:1", False, ("litellm-config.yaml",))
    assert specs["postgres-init"].mounts == ("init/create.sh",) and specs["postgres-init"].one_shot
    assert specs["observer"].built and specs["observer"].mounts == ()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "lists no services"),
        ({"services": {}}, "lists no services"),
        ([], "lists no services"),
        ({"services": {"caddy": {"volumes": []}}}, "service caddy has no image"),
    ],
)
def test_a_configuration_deploy_cannot_use_is_a_config_error(tmp_path: Path, config: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_services(config, tmp_path)


def test_tracked_files_are_the_compose_files_env_routing_workflows_and_mounts(settings: Settings) -> None:
    project = settings.project_dir
    (project / "workflows").mkdir()
    (project / "workflows" / "litellm-router.json").write_text("{}")
    specs = [ServiceSpec("caddy", "caddy:2", False, ("Caddyfile",))]
    assert tracked_files(settings, specs) == [
        "Caddyfile",
        "docker-compose.vps.yml",
        "routing-rules.yaml",
        "vps.env",
        "workflows/litellm-router.json",
    ]


def record(directory: Path, files: dict[str, str | None]) -> None:
    """A record as deploy or the slice engine writes it: files/<name> and state.json (None: the file was absent)."""
    (directory / "files").mkdir(parents=True)
    for name, text in files.items():
        if text is not None:
            (directory / "files" / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / "files" / name).write_text(text)
    present = {name: text is not None for name, text in files.items()}
    (directory / "state.json").write_text(json.dumps({"files": present, "modes": {n: 0o640 for n in files}}))


def test_the_last_deploy_is_compared_first_then_the_slices_last_verified_copies(settings: Settings) -> None:
    project = settings.project_dir
    record(deploy.deployed_dir(settings), {"litellm-config.yaml": "deployed\n", "Caddyfile": None, "routing-rules.yaml": "old\n"})
    record(project / ".ops" / "applied" / "slice10", {"backups/crontab": "slice 10's\n"})
    record(project / ".ops" / "applied" / "slice05", {"litellm-config.yaml": "slice 5\n", "Caddyfile": "slice 5's\n"})
    record(project / ".ops" / "applied" / "slice01", {"vps.env": "A=1\n", "docker-compose.vps.yml": "old\n"})
    recorded = recorded_files(settings)
    assert recorded["litellm-config.yaml"].copy == deploy.deployed_dir(settings) / "files" / "litellm-config.yaml"
    assert recorded["litellm-config.yaml"].deployed
    # slice 1's vps.env and compose file predate what later slices (COMPOSE_PROFILES) changed: no version to go back to
    assert "vps.env" not in recorded and "docker-compose.vps.yml" not in recorded
    assert recorded["Caddyfile"] == RecordedFile(False, 0o640, None, True)

    (project / "litellm-config.yaml").write_text("deployed\n")
    (project / "routing-rules.yaml").write_text("new\n")
    (project / "backups").mkdir(exist_ok=True)
    (project / "backups" / "crontab").write_text("slice 10's\n")
    tracked = ["Caddyfile", "backups/crontab", "docker-compose.vps.yml", "litellm-config.yaml", "routing-rules.yaml", "vps.env"]
    assert changed_files(project, tracked, recorded) == {
        "Caddyfile": "new since the last deploy",  # the deploy's record wins over slice 5's
        "docker-compose.vps.yml": "not recorded by an earlier deploy",
        "routing-rules.yaml": "changed since the last deploy",
        "vps.env": "not recorded by an earlier deploy",
    }  # litellm-config.yaml as deployed, the crontab as slice 10 verified it
    (project / "routing-rules.yaml").unlink()
    assert changed_files(project, ["routing-rules.yaml", "workflows/x.json"], recorded) == {
        "routing-rules.yaml": "removed since the last deploy"
    }  # workflows/x.json: absent and never recorded, nothing to deploy


def test_a_record_deploy_cannot_read_is_a_clear_error(settings: Settings) -> None:
    deploy.deployed_dir(settings).mkdir(parents=True)
    (deploy.deployed_dir(settings) / "state.json").write_text("{torn")
    with pytest.raises(OpsError, match=r"deployed/state.json cannot be read .* move it aside"):
        recorded_files(settings)


SPECS = [
    ServiceSpec("postgres", "postgres:18", False, ()),
    ServiceSpec("litellm", "litellm:1", False, ("litellm-config.yaml",)),
    ServiceSpec("caddy", "caddy:2", False, ("Caddyfile",)),
    ServiceSpec("observer", "aistack-observer:0.1.0", True, ("vps.env",)),
    ServiceSpec("qdrant", "qdrant:1", False, ()),
]


def test_each_service_is_started_recreated_or_left_and_the_plan_says_why() -> None:
    running = {
        "postgres": Running("c1", True, "sha256:pg", "h-pg"),
        "litellm": Running("c2", True, "sha256:old-litellm", "h-litellm"),
        "caddy": Running("c3", True, "sha256:caddy", "h-caddy-old"),
        "observer": Running("c4", True, "sha256:obs", "h-obs"),
        "qdrant": Running("c5", False, "sha256:q", "h-q"),  # stopped
    }
    wanted = {"postgres": "h-pg", "litellm": "h-litellm", "caddy": "h-caddy", "observer": "h-obs", "qdrant": "h-q"}
    images: dict[str, str | None] = {
        "postgres": "sha256:pg",
        "litellm": "sha256:new-litellm",  # the tag was pulled again
        "caddy": None,
        "observer": "sha256:obs",
        "qdrant": "sha256:q",
    }
    actions = {
        a.service: a for a in decide(SPECS, running, wanted, images, {"litellm-config.yaml": "changed since the last deploy"})
    }
    assert actions["postgres"] == ServiceAction("postgres", "unchanged")
    assert actions["litellm"] == ServiceAction(
        "litellm",
        "recreate",
        ["litellm-config.yaml changed", "its image litellm:1 is another build than the one it runs"],
        force=True,  # compose sees neither
    )
    assert actions["caddy"] == ServiceAction(
        "caddy", "recreate", ["its compose configuration changed", "its image caddy:2 is not on this engine (compose pulls it)"]
    )
    assert actions["observer"].action == "rebuild"
    assert actions["qdrant"] == ServiceAction("qdrant", "start", ["not running"])
    assert decide(SPECS[3:4], {}, {}, {}, {})[0].reasons == ["not running", "its image is built here first"]
    job = ServiceSpec("postgres-init", "postgres:18", False, ("postgres/init/create.sh",), one_shot=True)
    exited = {"postgres-init": Running("c6", False, "sha256:pg", "h")}
    assert decide([job], exited, {"postgres-init": "h"}, {}, {"postgres/init/create.sh": "changed"})[0].action == "run"


def test_a_running_service_the_configuration_no_longer_has_is_stopped() -> None:
    running = {"observer": Running("c1", True, "sha256:o", "h"), "qdrant": Running("c2", False, "sha256:q", "h")}
    stop = deploy.to_stop(running, ["postgres", "litellm"])  # events turned off in COMPOSE_PROFILES; qdrant already stopped
    assert [(a.service, a.action) for a in stop] == [("observer", "stop")]
    plan = DeployPlan("aistack", [ServiceAction("litellm", "unchanged"), *stop], {}, False, True)
    assert plan.changing == ["observer"]


def test_the_routing_workflow_goes_into_n8n_only_when_it_changed_and_n8n_is_deployed() -> None:
    assert deploy.workflows_changed({"workflows/litellm-router.json": "changed"}, ["n8n", "litellm"])
    assert deploy.workflows_changed({"routing-rules.yaml": "changed"}, ["n8n"])
    assert not deploy.workflows_changed({"routing-rules.yaml": "changed"}, ["litellm"])
    assert not deploy.workflows_changed({"litellm-config.yaml": "changed"}, ["n8n"])


def test_the_health_gate_asks_each_deployed_service_by_its_probe() -> None:
    assert probes_for(["postgres", "postgres-init", "langfuse-web", "mock-provider", "litellm"]) == (
        "postgres",
        "langfuse",
        "litellm",
    )
    assert probes_for(["postgres-init", "clickhouse"]) == ()  # no probe: the gate asks nothing (not everything)


def test_the_record_keeps_the_previous_files_and_a_rollback_puts_them_back(settings: Settings) -> None:
    project = settings.project_dir
    (project / "litellm-config.yaml").write_text("good\n")
    (project / "litellm-config.yaml").chmod(0o640)
    (project / "backups").mkdir(exist_ok=True)
    (project / "backups" / "crontab").write_text("slice 10's\n")
    specs = [
        ServiceSpec("litellm", "litellm:1", False, ("litellm-config.yaml",)),
        ServiceSpec("caddy", "caddy:2", False, ("Caddyfile",)),
    ]
    stack = deploy.Stack(Compose(project, (settings.compose_file,), settings.env_file))  # no container: Docker is not asked
    plan = DeployPlan("aistack", [], {}, False, False)
    first = deploy._save_record(settings, plan, specs, {}, stack)
    deploy._record_deployed(settings, first)  # the first deploy was healthy
    record(project / ".ops" / "applied" / "slice10", {"backups/crontab": "slice 10's\n"})

    (project / "litellm-config.yaml").write_text("bad\n")
    (project / "Caddyfile").unlink()
    (project / "backups" / "crontab").write_text("edited by hand\n")
    second = deploy._save_record(settings, plan, specs, {}, stack)
    assert not second.name.endswith(".partial")
    assert (second / "attempted" / "litellm-config.yaml").read_text() == "bad\n"  # the operator's edit is kept

    state = json.loads((second / "state.json").read_text())
    restored, removed = engine.restore_files(project, state["previous"]["files"], state["previous"]["modes"], second / "previous")
    assert (restored, removed) == (["Caddyfile", "litellm-config.yaml"], [])
    assert (project / "litellm-config.yaml").read_text() == "good\n"
    assert (project / "litellm-config.yaml").stat().st_mode & 0o777 == 0o640  # its own mode, not the copy's 0600
    assert (project / "backups" / "crontab").read_text() == "edited by hand\n"  # not a file deploy manages
    assert (second / "state.json").stat().st_mode & 0o777 == 0o600  # vps.env's secrets are in the record


def test_old_deploy_records_are_pruned_and_a_partial_one_goes(settings: Settings) -> None:
    directory = deploy.deploys_dir(settings)
    names = [f"2026112{i}T000000000000Z-deploy" for i in range(8)]
    for name in [*names, "20261129T000000000000Z-deploy.partial"]:
        (directory / name).mkdir(parents=True)
    assert deploy._prune(settings) == []
    assert sorted(p.name for p in directory.iterdir()) == names[-deploy.KEEP_DEPLOYS :]


def test_the_report_says_what_failed_and_where_the_attempt_is_kept() -> None:
    plan = DeployPlan("aistack", [ServiceAction("litellm", "recreate", ["litellm-config.yaml changed"], True)], {}, False, True)
    report = DeployReport(
        "rolled-back", plan, "20261124T000000000000Z-deploy-rolled-back", error="the health gate failed: litellm (503)"
    )
    report.rollback = ["restored litellm-config.yaml"]
    text = deploy.deploy_text(report)
    assert "litellm         recreate  (litellm-config.yaml changed)" in text
    assert "FAILED: the health gate failed: litellm (503)" in text
    assert "rollback: restored litellm-config.yaml" in text
    assert ".ops/deploys/20261124T000000000000Z-deploy-rolled-back/attempted" in text
    assert not report.ok and report.to_dict()["plan"]["services"][0]["force"] is True


@pytest.mark.parametrize("timeout", ["0", "-5", "nan", "4000"])
def test_a_bad_timeout_is_one_line_and_exit_2(settings: Settings, timeout: str) -> None:
    ran = run_ops("deploy", "--project-dir", str(settings.project_dir), "--timeout", timeout, "--yes")
    assert ran.returncode == 2
    assert ran.stderr.startswith("error: the deploy timeout must be more than 0 s and at most 3600 s")
    assert ran.stderr.count("\n") == 1


def test_deploy_without_vps_env_is_one_line_and_exit_2(project: Path) -> None:
    ran = run_ops("deploy", "--project-dir", str(project), "--dry-run")
    assert ran.returncode == 2
    assert "vps.env not found" in ran.stderr and ran.stderr.count("\n") == 1
