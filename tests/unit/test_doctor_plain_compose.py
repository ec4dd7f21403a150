"""Doctor rule plain-compose: plain `docker compose` in the project directory reaches what ops reaches (issue 13 item 5)."""

from __future__ import annotations

import re
from pathlib import Path

from ops.config import load_settings
from ops.doctor import run_doctor
from ops.secrets import init_secrets


def messages(project: Path) -> list[str]:
    return [f.message for f in run_doctor(load_settings(project), ["plain-compose"], programs=False).findings]


def set_env(project: Path, key: str, value: str) -> None:
    path = project / "vps.env"
    path.write_text(re.sub(rf"^{key}=.*$", f"{key}={value}", path.read_text(), flags=re.M))


def test_a_project_from_secrets_init_passes(project: Path) -> None:
    settings = load_settings(project)
    assert messages(project) == []  # no vps.env yet: nothing to say
    init_secrets(settings.env_example, settings.env_file)
    assert messages(project) == []


def test_no_link_an_own_env_file_and_a_stale_compose_file_are_named(project: Path) -> None:
    settings = load_settings(project)
    init_secrets(settings.env_example, settings.env_file)
    (project / ".env").unlink()
    assert messages(project) == [
        "no .env in the project: plain `docker compose` finds nothing; `ops secrets add-missing` links it"
    ]
    (project / ".env").write_text("COMPOSE_FILE=docker-compose.vps.yml\n")
    assert messages(project)[0].startswith(".env is not a link to vps.env: plain `docker compose` reads it instead")
    (project / ".env").unlink()
    (project / ".env").symlink_to("vps.env")
    (project / "compose.more.yml").write_text("services: {}\n")
    set_env(project, "OPS_COMPOSE_OVERRIDES", "compose.more.yml")
    assert messages(project) == [
        "COMPOSE_FILE is 'docker-compose.vps.yml' in vps.env, not 'docker-compose.vps.yml:compose.more.yml': "
        "plain `docker compose` would use other files than ops; set it so"
    ]
    set_env(project, "COMPOSE_FILE", "docker-compose.vps.yml:compose.more.yml")
    assert messages(project) == []
