"""The runbook's compose commands as a new operator types them, on a real engine (issue 13 item 5).

Plain `docker compose exec ...` in the project directory, without -f or --env-file, reaches the
stack once `ops secrets init` has linked .env to vps.env (COMPOSE_FILE, COMPOSE_PROJECT_NAME and the
variables come from there). And a profile turned off really stops its services: compose's own
`up --remove-orphans` leaves them running, `ops profile disable` stops and removes them.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops import tools
from ops.envfile import read_env_file
from ops.profiles import disable_profile
from tests.stack.conftest import StackProject, new_stack_project

pytestmark = pytest.mark.stack

EXTRA = """# Test-only: a service of a profile of its own, to turn on and off.
services:
  extra:
    image: {python}
    profiles: [extra]
    entrypoint: ["sleep", "infinity"]
    stop_grace_period: 1s  # sleep as pid 1 ignores SIGTERM: no 10 s wait on each stop
    deploy:
      resources:
        limits:
          memory: 32M
"""


def set_env(project: StackProject, **values: str) -> None:
    path = project.dir / "vps.env"
    text = path.read_text()
    for key, value in values.items():
        text = re.sub(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
    path.write_text(text)


@pytest.fixture(scope="module")
def project(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProject]:
    for stack in new_stack_project(images, tmp_path_factory.mktemp("plain")):
        (stack.dir / "compose.extra.yml").write_text(EXTRA.format(python=images["python"]))
        stack.overrides = (*stack.overrides, "compose.extra.yml")
        # as vps.env.example says for overrides: ops reads OPS_COMPOSE_OVERRIDES, plain compose COMPOSE_FILE
        set_env(
            stack,
            OPS_COMPOSE_OVERRIDES="compose.standin.yml,compose.extra.yml",
            COMPOSE_FILE="docker-compose.vps.yml:compose.standin.yml:compose.extra.yml",
        )
        yield stack


def plain_compose(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`docker compose ARGS` typed in directory: no -f, no --env-file, no -p, no COMPOSE_* in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    argv = [*(tools.docker_compose() or ["docker", "compose"]), *args]
    return subprocess.run(argv, cwd=directory, env=env, capture_output=True, text=True, timeout=120)


def running(project: StackProject) -> set[str]:
    return set(project.compose("ps", "--format", "{{.Service}}").stdout.split())


def test_plain_docker_compose_exec_reaches_the_stack(project: StackProject) -> None:
    assert (project.dir / ".env").is_symlink()  # made by ops secrets init (the fixture's init_secrets)
    query = plain_compose(project.dir, "exec", "-T", "postgres", "psql", "-U", "postgres", "-tAc", "select 41 + 1")
    assert query.returncode == 0, query.stderr
    assert query.stdout.strip() == "42"
    listed = plain_compose(project.dir, "ps", "--format", "{{.Name}}")
    assert any(name.startswith(f"{project.name}-postgres-") for name in listed.stdout.split()), listed

    (project.dir / ".env").rename(project.dir / "env.away")  # without the link, what the issue saw
    try:
        assert plain_compose(project.dir, "exec", "-T", "postgres", "true").returncode != 0
    finally:
        (project.dir / "env.away").rename(project.dir / ".env")


def test_disabling_a_profile_stops_its_services(project: StackProject) -> None:
    set_env(project, COMPOSE_PROFILES="extra")
    project.compose("up", "--detach", "--wait", "extra")
    assert "extra" in running(project)

    set_env(project, COMPOSE_PROFILES="")  # the old runbook's way: edit vps.env, then up --remove-orphans
    project.compose("up", "--detach", "--remove-orphans", "postgres")
    assert "extra" in running(project)  # compose keeps it: the service is still in the file

    changes = disable_profile(project.settings, "extra")  # the profile already off: its leftovers stopped
    assert changes == ["stopped and removed extra (profile extra is off)"]
    assert "extra" not in project.compose("ps", "--all", "--format", "{{.Service}}").stdout.split()

    set_env(project, COMPOSE_PROFILES="extra")
    project.compose("up", "--detach", "--wait", "extra")
    changes = disable_profile(project.settings, "extra")
    assert changes == ["vps.env: COMPOSE_PROFILES=", "stopped and removed extra (profile extra is off)"]
    assert read_env_file(project.dir / "vps.env")["COMPOSE_PROFILES"] == ""
    assert running(project) >= {"postgres"} and "extra" not in running(project)
    assert disable_profile(project.settings, "extra") == []  # a second run changes nothing
