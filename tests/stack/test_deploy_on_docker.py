"""`ops deploy` on Docker: a changed LiteLLM config reaches the container, a config that fails LiteLLM's health is
rolled back with the previous one serving, and a held operator lock refuses the deploy before any change.

One module-scoped stack (postgres, redis, LiteLLM, the fakes); n8n, qdrant and Caddy are moved to a profile this
module does not enable, so `ops deploy` (every service of the enabled profiles) deploys what the stand-ins run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from ops.deploy import deployed_dir, deploys_dir, rollback_tag, run_deploy
from ops.journal import Journal
from ops.slices import engine
from tests.stack.conftest import StackProject

pytestmark = pytest.mark.stack

NOT_HERE = """# Test-only: services this module does not run (compose leaves a service of a disabled profile out), and
# LiteLLM's image under a tag of its own, which a test points at another build as a re-pull would.
services:
  n8n: {{profiles: [not-in-this-test]}}
  qdrant: {{profiles: [not-in-this-test]}}
  caddy: {{profiles: [not-in-this-test]}}
  litellm: {{image: {litellm}}}
"""
NEW_MODEL = """model_list:
  - model_name: deployed-check
    litellm_params:
      model: openai/gpt-5.4-2026-03-05
      api_key: os.environ/OPENAI_API_KEY
      api_base: os.environ/OPENAI_API_BASE
"""


@pytest.fixture(scope="module")
def deployed(module_stack_project: StackProject, images: dict[str, str]) -> Iterator[StackProject]:
    """The module's stack after a first `ops deploy` (which starts redis and LiteLLM)."""
    project = module_stack_project
    subprocess.run(["docker", "tag", images["litellm"], litellm_image(project)], check=True)
    (project.dir / "compose.deploy.yml").write_text(NOT_HERE.format(litellm=litellm_image(project)))
    project.overrides = (*project.overrides, "compose.deploy.yml")
    env = project.settings.env_file
    text, replaced = re.subn(
        r"^OPS_COMPOSE_OVERRIDES=.*$", "OPS_COMPOSE_OVERRIDES=compose.standin.yml,compose.deploy.yml", env.read_text(), flags=re.M
    )
    assert replaced == 1
    env.write_text(text)
    first = run_deploy(project.settings, timeout=240)
    assert first.outcome == "ok", first.to_dict()
    assert {"litellm", "redis"} <= set(first.plan.changing)
    try:
        yield project
    finally:
        tags = [rollback_tag(project.name, s) for s in ("postgres", "redis", "litellm", "mock-provider", "langfuse-fake")]
        subprocess.run(["docker", "rmi", litellm_image(project), *tags], capture_output=True, check=False)


def litellm_image(project: StackProject) -> str:
    return f"aistack-deploy-test/litellm:{project.name}"


def image_id(reference: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", reference], capture_output=True, text=True, check=True
    ).stdout.strip()


def running_image(project: StackProject, service: str) -> str:
    argv = ["docker", "inspect", "--format", "{{.Image}}", container(project, service)]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def models(project: StackProject) -> set[str]:
    key = project.settings.effective_env["LITELLM_MASTER_KEY"]
    response = httpx.get(f"http://127.0.0.1:{project.gateway_port}/v1/models", headers={"Authorization": f"Bearer {key}"})
    response.raise_for_status()
    return {m["id"] for m in response.json()["data"]}


def container(project: StackProject, service: str) -> str:
    return project.compose("ps", "-q", service).stdout.strip()


def test_a_changed_litellm_config_reaches_the_container(deployed: StackProject) -> None:
    config = deployed.dir / "litellm-config.yaml"
    assert "deployed-check" not in models(deployed)
    config.write_text(config.read_text().replace("model_list:\n", NEW_MODEL, 1))
    before = container(deployed, "litellm")
    # a service whose profile is off but still runs (as after a hand edit of COMPOSE_PROFILES): deploy stops it
    deployed.compose("--profile", "not-in-this-test", "up", "--detach", "--wait", "qdrant")

    plan = run_deploy(deployed.settings, dry_run=True).plan
    actions = {a.service: a for a in plan.services}
    assert actions["litellm"].action == "recreate" and actions["litellm"].reasons == ["litellm-config.yaml changed"]
    assert actions["redis"].action == "unchanged"
    assert actions["qdrant"].action == "stop"
    assert container(deployed, "litellm") == before  # a dry run changes nothing

    report = run_deploy(deployed.settings, timeout=180)
    assert report.outcome == "ok", report.to_dict()
    assert report.health is not None and {r.name for r in report.health.results} == {"litellm", "postgres", "redis"}
    assert "deployed-check" in models(deployed)
    assert container(deployed, "litellm") != before
    assert "stopped qdrant (volumes kept)" in report.steps
    assert deployed.compose("--profile", "not-in-this-test", "ps", "-q", "qdrant").stdout.strip() == ""
    assert (deployed_dir(deployed.settings) / "files" / "litellm-config.yaml").read_text() == config.read_text()


def test_a_config_that_fails_health_is_rolled_back_with_the_previous_image_and_config_serving(deployed: StackProject) -> None:
    config = deployed.dir / "litellm-config.yaml"
    good = config.read_text()
    assert "deployed-check" in good  # the previous test's deploy
    broken = good.replace("model_list:\n", "model_list: [\n", 1)  # YAML LiteLLM cannot load: it exits at start
    config.write_text(broken)
    # the image's tag now names another build (as after a pull): the rollback must point it back, not keep it
    reference, previous = litellm_image(deployed), image_id(litellm_image(deployed))
    dockerfile = f"FROM {reference}\nLABEL aistack.deploy-test=another-build\n"
    subprocess.run(["docker", "build", "-q", "-t", reference, "-"], input=dockerfile, text=True, capture_output=True, check=True)
    assert image_id(reference) != previous
    plan = run_deploy(deployed.settings, dry_run=True).plan
    assert next(a for a in plan.services if a.service == "litellm").reasons == [
        "litellm-config.yaml changed",
        f"its image {reference} is another build than the one it runs",
    ]

    proc = subprocess.run(
        [sys.executable, "-m", "ops.cli", "deploy", "--project-dir", str(deployed.dir), "--yes", "--json", "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["outcome"] == "rolled-back"
    assert "litellm" in report["error"]
    assert "restored litellm-config.yaml" in report["rollback"]
    # only what differs from the previous files and images is recreated (not postgres, which holds the journal)
    assert [s for s in report["rollback"] if s.startswith("recreated")] == [
        "recreated litellm from the previous files and images"
    ]
    assert config.read_text() == good  # the previous file is back in place
    assert "deployed-check" in models(deployed)  # and the gateway serves it
    assert image_id(reference) == previous == running_image(deployed, "litellm")  # from the previous image
    attempted = deploys_dir(deployed.settings) / report["record"] / "attempted" / "litellm-config.yaml"
    assert attempted.read_text() == broken  # the operator's edit is kept, not lost
    assert (deployed_dir(deployed.settings) / "files" / "litellm-config.yaml").read_text() == good  # still what runs
    journal = Journal(engine.Runtime.for_settings(deployed.settings).psql).entries(3)
    assert [(e.action, e.outcome) for e in journal[:2]] == [("deploy", "rolled-back"), ("deploy", "ok")]


def test_a_held_lock_refuses_the_deploy_before_any_change(deployed: StackProject) -> None:
    runtime = engine.Runtime.for_settings(deployed.settings)
    config = deployed.dir / "litellm-config.yaml"
    config.write_text(config.read_text().replace("deployed-check", "deployed-again"))
    before, records = container(deployed, "litellm"), sorted(deploys_dir(deployed.settings).iterdir())
    runtime.psql.query(
        "INSERT INTO ops.lock (id, holder, host, pid, operation) VALUES (1, 'alice', 'laptop', 4242, 'apply slice 3');"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ops.cli", "deploy", "--project-dir", str(deployed.dir), "--yes", "--timeout", "60"],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        holder = runtime.psql.query("SELECT holder, host, operation FROM ops.lock;")
    finally:
        runtime.psql.query("DELETE FROM ops.lock;")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "another operation holds the lock: 'apply slice 3' by alice@laptop" in proc.stderr
    assert proc.stderr.count("\n") == 1  # one line, no traceback
    assert holder == [["alice", "laptop", "apply slice 3"]]  # the other operation's lock is not taken or released
    assert container(deployed, "litellm") == before
    assert sorted(deploys_dir(deployed.settings).iterdir()) == records  # nothing recorded, nothing changed
