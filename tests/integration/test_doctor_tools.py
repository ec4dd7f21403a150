"""ops doctor with the real programs: `docker compose config` and `caddy validate` (the unit tier runs none).

The rules' decisions on the files are tested in tests/unit/test_doctor*.py with
programs=False; here the same doctor runs caddy and docker compose, so what only
they can tell (a key Compose does not know, a Caddyfile directive caddy refuses,
what Compose makes of the env file) is checked too.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from ops import tools
from ops.config import load_settings
from ops.doctor import run_doctor
from tests.conftest import REPO, require
from tests.unit.test_doctor import COMPOSE, Broken, assert_named, edit, with_env
from tests.unit.test_doctor_hardening import CLOUD_KEYS, FILLED

pytestmark = pytest.mark.integration

# what only the real programs refuse
BROKEN: dict[str, Broken] = {
    "compose rejected by docker compose": (
        edit(COMPOSE, "    restart: unless-stopped\n    ports:", "    restart: unless-stopped\n    enviroment: {}\n    ports:"),
        "compose-schema",
        "docker compose config rejects",
    ),
    "caddyfile invalid": (
        edit("Caddyfile", "reverse_proxy n8n:5678", "reverse_prxy n8n:5678"),
        "caddyfile",
        "caddy validate rejects",
    ),
}


def _needs_tools(rule: str) -> None:
    if rule == "caddyfile":
        require(tools.caddy(), "caddy")
    if rule == "compose-schema":
        require(tools.docker_compose(), "docker compose")


def test_repo_passes() -> None:
    require(tools.caddy(), "caddy")
    require(tools.docker_compose(), "docker compose")
    report = run_doctor(load_settings(REPO))
    errors = [f for f in report.findings if f.severity == "error"]
    assert errors == []
    assert report.memory is not None and report.memory.total_mb <= report.memory.budget_mb


def test_repo_passes_with_generated_vps_env(project: Path) -> None:
    _needs_tools("caddyfile")
    with_env(FILLED)(project)
    report = run_doctor(load_settings(project))
    assert [f for f in report.findings if f.severity == "error"] == []
    assert all(f.rule == "memory" and "langfuse" in f.message for f in report.findings)  # profiles that need a bigger VM


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_file_is_named(project: Path, case: str) -> None:
    _needs_tools(BROKEN[case][1])
    assert_named(project, BROKEN[case], programs=True)


def test_filled_in_vps_env_passes_every_rule(project: Path) -> None:
    require(tools.caddy(), "caddy")
    require(tools.docker_compose(), "docker compose")
    with_env(FILLED)(project)
    report = run_doctor(load_settings(project))
    assert [f for f in report.findings if f.severity == "error"] == []
    # what is left is the memory rule telling which profiles would not fit this VM
    assert {(f.rule, f.message.split(" would need")[0]) for f in report.findings} == {
        ("memory", "profile core+langfuse"),
        ("memory", "profile core+events+langfuse"),
    }


def test_a_fresh_up_starts_no_service_that_needs_the_truth_repository(project: Path) -> None:
    """Item 21: `up -d --wait` on a fresh VM must not start the observer (it restart-loops without the repository)."""
    compose = tools.docker_compose()
    require(compose, "docker compose")
    assert compose is not None
    with_env(FILLED)(project)
    argv = [*compose, "--project-directory", str(project), "--env-file", str(project / "vps.env"), "-f", str(project / COMPOSE)]
    core = subprocess.run([*argv, "config", "--services"], capture_output=True, text=True, check=True).stdout.split()
    assert "observer" not in core and {"caddy", "litellm", "n8n", "redis"} <= set(core)
    events = subprocess.run([*argv, "--profile", "events", "config", "--services"], capture_output=True, text=True, check=True)
    assert "observer" in events.stdout.split()


def test_doctor_validates_the_caddyfile_with_the_images_caddy() -> None:
    """Item 6: Debian's caddy 2.6 rejects `basic_auth`; the doctor must run the image's 2.10."""
    caddy = tools.caddy()
    require(caddy, "caddy")
    assert caddy is not None
    version = subprocess.run([caddy, "version"], capture_output=True, text=True, check=True).stdout
    image = re.search(r"image: caddy:(\d+\.\d+)", (REPO / COMPOSE).read_text())
    assert image is not None
    assert version.lstrip("v").startswith(image.group(1) + "."), (caddy, version)


def test_caddyfile_is_valid_without_a_langfuse_domain(project: Path) -> None:
    """An empty LANGFUSE_DOMAIN (Langfuse not on this VM) must not break the whole Caddyfile."""
    require(tools.caddy(), "caddy")
    with_env(FILLED)(project)
    assert load_settings(project).env["LANGFUSE_DOMAIN"] == ""
    assert run_doctor(load_settings(project), ["caddyfile"]).findings == []


def litellm_environment(project: Path) -> dict[str, str]:
    compose = tools.docker_compose()
    require(compose, "docker compose")
    assert compose is not None
    argv = [*compose, "--project-directory", str(project), "--env-file", str(project / "vps.env"), "-f", str(project / COMPOSE)]
    config = json.loads(subprocess.run([*argv, "config", "--format", "json"], capture_output=True, text=True, check=True).stdout)
    environment: dict[str, str] = config["services"]["litellm"]["environment"]
    return environment


def test_by_default_litellm_gets_no_langfuse_host_or_keys(project: Path) -> None:
    """Item 10: a fresh vps.env sends no prompt off the VM: no host, and no key (LiteLLM's Langfuse client is then off)."""
    with_env(FILLED)(project)
    env = litellm_environment(project)
    assert (env["LANGFUSE_HOST"], env["LANGFUSE_PUBLIC_KEY"], env["LANGFUSE_SECRET_KEY"]) == ("", "", "")


def test_litellm_gets_the_keys_once_langfuse_host_is_set(project: Path) -> None:
    with_env(FILLED + "\nLANGFUSE_HOST=https://cloud.langfuse.com\n" + CLOUD_KEYS)(project)
    env = litellm_environment(project)
    assert env["LANGFUSE_HOST"] == "https://cloud.langfuse.com"
    assert env["LANGFUSE_PUBLIC_KEY"] == "pk-lf-1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7081"
    assert env["LANGFUSE_SECRET_KEY"].startswith("sk-lf-9a8b")
