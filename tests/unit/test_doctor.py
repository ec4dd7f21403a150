"""ops doctor: passes on the repo, and names each kind of problem in a broken copy.

The rules decide on the files alone here (programs=False): what only the real
`docker compose config` and `caddy validate` can tell is tested in
tests/integration/test_doctor_tools.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from ops import tools
from ops.config import load_settings
from ops.doctor import run_doctor
from ops.secrets import init_secrets
from tests.conftest import REPO
from tests.unit.cli import run_ops


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
Broken = tuple[Callable[[Path], None], str, str]  # (breaker, rule, message in an error)
BROKEN: dict[str, Broken] = {
    "compose not yaml": (edit(COMPOSE, "services:\n", "services:\n  - [unclosed\n"), "compose-schema", "not valid YAML"),
    "compose unknown top-level key": (
        edit(COMPOSE, "networks:\n  edge", "servics: {}\nnetworks:\n  edge"),
        "compose-schema",
        "unknown top-level key 'servics'",
    ),
    "compose missing service": (edit(COMPOSE, "  qdrant:\n", "  vectors:\n"), "compose-schema", "service 'qdrant' is missing"),
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
    "over the memory budget": (edit(COMPOSE, "memory: 1024M", "memory: 2400M"), "memory", "over the budget of 3424 MB"),
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
}


def test_repo_passes() -> None:
    report = run_doctor(load_settings(REPO), programs=False)
    errors = [f for f in report.findings if f.severity == "error"]
    assert errors == []
    assert report.memory is not None and report.memory.total_mb <= report.memory.budget_mb


def test_repo_passes_with_generated_vps_env(project: Path) -> None:
    from tests.unit.test_doctor_hardening import FILLED  # the names, address, key and bucket a user fills in

    with_env(FILLED)(project)
    report = run_doctor(load_settings(project), programs=False)
    assert [f for f in report.findings if f.severity == "error"] == []
    assert all(f.rule == "memory" and "langfuse" in f.message for f in report.findings)  # profiles that need a bigger VM


def assert_named(project: Path, broken: Broken, programs: bool) -> None:
    """Break the copy as the case says; the doctor then fails with an error of the case's rule naming the problem."""
    breaker, rule, message = broken
    breaker(project)
    report = run_doctor(load_settings(project), programs=programs)
    assert not report.ok
    matching = [f for f in report.findings if f.rule == rule and f.severity == "error"]
    assert any(message in f.message for f in matching), report.findings


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_file_is_named(project: Path, case: str) -> None:
    assert_named(project, BROKEN[case], programs=False)


def test_cli_json_reports_memory_and_exits_non_zero_on_error(project: Path) -> None:
    BROKEN["image latest"][0](project)
    proc = run_ops("doctor", "--project-dir", str(project), "--json", "--rule", "images", "--rule", "memory")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["memory"]["total_mb"] == 2272  # the core: Langfuse is off by default (Langfuse Cloud)
    assert data["memory"]["budget_mb"] == 3424
    assert [f["rule"] for f in data["findings"] if f["severity"] == "error"] == ["images"]


def test_cli_names_an_unknown_rule(project: Path) -> None:
    proc = run_ops("doctor", "--project-dir", str(project), "--rule", "nope")
    assert proc.returncode == 2
    assert "unknown doctor rule(s): nope" in proc.stderr


def test_cli_outside_a_project_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_ops("doctor", "--project-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "vps.env.example not found" in proc.stderr


def test_core_profile_only_counts_core_services(project: Path) -> None:
    with_env("COMPOSE_PROFILES=")(project)
    report = run_doctor(load_settings(project), ["memory"])
    assert report.memory is not None
    assert report.memory.enabled_profiles == ()
    assert report.memory.total_mb == 64 + 320 + 160 + 448 + 1024 + 256  # the observer is in profile events


def test_only_the_rules_that_run_programs_look_for_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ops doctor --rule images` neither looks for nor runs caddy or docker compose."""

    def looked_for() -> None:
        raise AssertionError("a program was looked for")

    monkeypatch.setattr(tools, "caddy", looked_for)
    monkeypatch.setattr(tools, "docker_compose", looked_for)
    report = run_doctor(load_settings(REPO), ["images", "memory", "secrets", "env-vars"])
    assert report.rules == ["env-vars", "secrets", "memory", "images"]


def test_without_caddy_and_compose_the_doctor_says_what_it_did_not_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "caddy", lambda: None)  # as on a laptop with neither installed
    monkeypatch.setattr(tools, "docker_compose", lambda: None)
    report = run_doctor(load_settings(REPO), ["caddyfile", "compose-schema"])
    assert [(f.rule, f.severity, f.message) for f in report.findings] == [
        ("compose-schema", "warning", "docker compose not found: the full Compose schema was not checked"),
        ("caddyfile", "warning", "caddy not found: the Caddyfile was not validated (apt-get install caddy)"),
    ]
    assert report.ok


def test_with_programs_off_the_files_are_still_checked(project: Path) -> None:
    (project / "Caddyfile").unlink()
    edit(COMPOSE, "networks:\n  edge", "servics: {}\nnetworks:\n  edge")(project)
    report = run_doctor(load_settings(project), ["caddyfile", "compose-schema"], programs=False)
    assert [(f.rule, f.severity, f.message) for f in report.findings] == [
        ("compose-schema", "error", "unknown top-level key 'servics'"),
        ("caddyfile", "error", "Caddyfile not found"),
    ]
