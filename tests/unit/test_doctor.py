"""ops doctor: passes on the repo, and names each kind of problem in a broken copy.

The compose-schema and caddyfile rules run the real `docker compose` and
`caddy`; those cases need the tools (installed by `make test`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ops import tools
from ops.config import load_settings
from ops.doctor import run_doctor
from ops.secrets import init_secrets
from tests.conftest import REPO, require


def edit(name: str, old: str, new: str, count: int = 1) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        path = project / name
        text = path.read_text()
        assert old in text, f"test setup: {old!r} not in {name}"
        path.write_text(text.replace(old, new, count))

    return apply


def with_env(lines: str, mode: int = 0o600) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        settings = load_settings(project)
        init_secrets(settings.env_example, settings.env_file)
        text = settings.env_file.read_text()
        for line in lines.splitlines():
            key = line.split("=", 1)[0]
            text = re.sub(rf"^{key}=.*$", line, text, flags=re.M)
        settings.env_file.write_text(text)
        settings.env_file.chmod(mode)

    return apply


COMPOSE = "docker-compose.vps.yml"
LITELLM = "litellm-config.yaml"
BROKEN: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "compose not yaml": (edit(COMPOSE, "services:\n", "services:\n  - [unclosed\n"), "compose-schema", "not valid YAML"),
    "compose unknown top-level key": (
        edit(COMPOSE, "networks:\n  edge", "servics: {}\nnetworks:\n  edge"),
        "compose-schema",
        "unknown top-level key 'servics'",
    ),
    "compose missing service": (edit(COMPOSE, "  qdrant:\n", "  vectors:\n"), "compose-schema", "service 'qdrant' is missing"),
    "compose rejected by docker compose": (
        edit(COMPOSE, "    restart: unless-stopped\n    ports:", "    restart: unless-stopped\n    enviroment: {}\n    ports:"),
        "compose-schema",
        "docker compose config rejects",
    ),
    "undefined variable": (
        edit(COMPOSE, "GENERIC_TIMEZONE: ${TZ}", "GENERIC_TIMEZONE: ${TIMEZONE_TYPO}"),
        "env-vars",
        "TIMEZONE_TYPO is used in docker-compose.vps.yml but not listed",
    ),
    "litellm env not passed": (
        edit(COMPOSE, "      GEMINI_API_BASE: ${GEMINI_API_BASE}\n", ""),
        "env-vars",
        "GEMINI_API_BASE is read by litellm-config.yaml",
    ),
    "placeholder secret": (with_env("REDIS_PASSWORD=changeme"), "secrets", "REDIS_PASSWORD is a placeholder"),
    "weak secret": (with_env("POSTGRES_PASSWORD=short1"), "secrets", "POSTGRES_PASSWORD is weak"),
    "vps.env readable by others": (with_env("", mode=0o644), "secrets", "mode 644"),
    "over the memory budget": (edit(COMPOSE, "memory: 768M", "memory: 2400M"), "memory", "over the budget of 3424 MB"),
    "service without memory limit": (
        edit(COMPOSE, "    deploy:\n      resources:\n        limits:\n          memory: 256M\n", ""),
        "memory",
        "'qdrant' has no memory limit",
    ),
    "bad memory size": (edit(COMPOSE, "memory: 256M", "memory: lots"), "memory", "'lots' is not a size"),
    "port published": (
        edit(
            COMPOSE,
            '    networks: [data]\n    healthcheck:\n      test: ["CMD-SHELL", "pg_isready',
            '    ports: ["5432:5432"]\n    networks: [data]\n    healthcheck:\n      test: ["CMD-SHELL", "pg_isready',
        ),
        "ports",
        "'postgres' publishes '5432:5432'",
    ),
    "image latest": (edit(COMPOSE, "image: redis:7.4.5-bookworm", "image: redis:latest"), "images", "moving tag 'latest'"),
    "image bare major": (
        edit(COMPOSE, "image: langfuse/langfuse:3.174.1", "image: langfuse/langfuse:3"),
        "images",
        "tag '3' is not an exact version",
    ),
    "image without tag": (edit(COMPOSE, "image: qdrant/qdrant:v1.15.4", "image: qdrant/qdrant"), "images", "has no tag"),
    "no healthcheck": (
        edit(COMPOSE, "    healthcheck:\n      # the image has no curl", "    x-healthcheck:\n      # the image has no curl"),
        "healthchecks",
        "'qdrant' has no healthcheck",
    ),
    "no restart policy": (
        edit(COMPOSE, "    image: qdrant/qdrant:v1.15.4\n    restart: unless-stopped\n", "    image: qdrant/qdrant:v1.15.4\n"),
        "healthchecks",
        "'qdrant' has no restart policy",
    ),
    "no log rotation": (
        edit(COMPOSE, "          memory: 64M\n    logging: *logging\n", "          memory: 64M\n"),
        "healthchecks",
        "'caddy' has no log rotation",
    ),
    "litellm not yaml": (edit(LITELLM, "model_list:", "model_list: [\n"), "litellm-config", "not valid YAML"),
    "model group without fallback": (
        edit(LITELLM, '    - gemini-2: ["claude-3", "gpt-4", "cheap"]\n', ""),
        "litellm-config",
        "'gemini-2' has no fallback",
    ),
    "fallback to unknown group": (
        edit(LITELLM, '- smart: ["claude-3", "gpt-4"]', '- smart: ["claude-4"]'),
        "litellm-config",
        "unknown model group 'claude-4'",
    ),
    "key written in config": (
        edit(LITELLM, "api_key: os.environ/OPENAI_API_KEY", "api_key: sk-live-oops"),
        "litellm-config",
        "api_key is written in the file",
    ),
    "master key literal": (
        edit(LITELLM, "master_key: os.environ/LITELLM_MASTER_KEY", "master_key: sk-1234"),
        "litellm-config",
        "master_key must come from the environment",
    ),
    "deployment without a price": (
        edit(LITELLM, "      output_cost_per_token: 0.00001\n", "", 1),
        "model-lifecycle",
        "'claude-3' has no output_cost_per_token",
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
    from tests.unit.test_doctor_hardening import FILLED  # the names, address, key and bucket a user fills in

    with_env(FILLED)(project)
    report = run_doctor(load_settings(project))
    assert [f for f in report.findings if f.severity == "error"] == []
    assert all(f.rule == "memory" and "langfuse" in f.message for f in report.findings)  # profiles that need a bigger VM


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_file_is_named(project: Path, case: str) -> None:
    breaker, rule, message = BROKEN[case]
    _needs_tools(rule)
    breaker(project)
    report = run_doctor(load_settings(project))
    assert not report.ok
    matching = [f for f in report.findings if f.rule == rule and f.severity == "error"]
    assert any(message in f.message for f in matching), report.findings


def test_cli_json_reports_memory_and_exits_non_zero_on_error(project: Path) -> None:
    BROKEN["image latest"][0](project)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "doctor",
            "--project-dir",
            str(project),
            "--json",
            "--rule",
            "images",
            "--rule",
            "memory",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["memory"]["total_mb"] == 2016  # the core: Langfuse is off by default (Langfuse Cloud)
    assert data["memory"]["budget_mb"] == 3424
    assert [f["rule"] for f in data["findings"] if f["severity"] == "error"] == ["images"]


def test_cli_names_an_unknown_rule(project: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ops.cli", "doctor", "--project-dir", str(project), "--rule", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown doctor rule(s): nope" in proc.stderr


def test_cli_outside_a_project_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ops.cli", "doctor", "--project-dir", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "vps.env.example not found" in proc.stderr


def test_core_profile_only_counts_core_services(project: Path) -> None:
    with_env("COMPOSE_PROFILES=")(project)
    report = run_doctor(load_settings(project), ["memory"])
    assert report.memory is not None
    assert report.memory.enabled_profiles == ()
    assert report.memory.total_mb == 64 + 320 + 160 + 448 + 768 + 256  # the observer is in profile events
