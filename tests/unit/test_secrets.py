from pathlib import Path

import bcrypt
import pytest

from ops.config import load_settings
from ops.envfile import read_env_file
from ops.errors import ConfigError
from ops.secrets import DERIVED, GENERATED, generate_secrets, init_secrets, is_placeholder, secret_problems
from tests.unit.conftest import REAL_GENSALT


def test_init_writes_every_secret_strong_and_private(project: Path) -> None:
    settings = load_settings(project)
    values = init_secrets(settings.env_example, settings.env_file)
    assert settings.env_file.stat().st_mode & 0o777 == 0o600
    written = read_env_file(settings.env_file)
    for name in [*GENERATED, *DERIVED]:
        assert written[name] == values[name]
        assert not is_placeholder(written[name])
    assert secret_problems(written) == []
    assert bcrypt.checkpw(written["BASIC_AUTH_PASSWORD"].encode(), written["BASIC_AUTH_HASH"].encode())
    # every variable of the example is kept, with its comments
    assert set(read_env_file(settings.env_example)) == set(written)
    assert "# --- LiteLLM gateway ---" in settings.env_file.read_text()


def test_two_runs_generate_different_secrets(project: Path, tmp_path: Path) -> None:
    example = project / "vps.env.example"
    first = init_secrets(example, tmp_path / "a.env")
    second = init_secrets(example, tmp_path / "b.env")
    assert all(first[name] != second[name] for name in GENERATED)


def test_init_refuses_to_overwrite_and_keeps_the_file(project: Path) -> None:
    settings = load_settings(project)
    settings.env_file.write_text("POSTGRES_PASSWORD=precious\n")
    with pytest.raises(ConfigError, match="already exists"):
        init_secrets(settings.env_example, settings.env_file)
    assert settings.env_file.read_text() == "POSTGRES_PASSWORD=precious\n"


def test_dry_run_writes_nothing(project: Path) -> None:
    settings = load_settings(project)
    init_secrets(settings.env_example, settings.env_file, dry_run=True)
    assert not settings.env_file.exists()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("POSTGRES_PASSWORD", "", "placeholder"),
        ("POSTGRES_PASSWORD", "change-me", "placeholder"),
        ("REDIS_PASSWORD", "your_redis_password", "placeholder"),
        ("REDIS_PASSWORD", "hunter2hunter2", "weak"),
        ("LITELLM_MASTER_KEY", "abcdefabcdefabcdefabcdefabcdef", "must start with 'sk-'"),
        ("LANGFUSE_ENCRYPTION_KEY", "z" * 64, "64 hex characters"),
        ("BASIC_AUTH_HASH", bcrypt.hashpw(b"other-password", bcrypt.gensalt(4)).decode(), "does not match"),
    ],
)
def test_bad_secrets_are_named(project: Path, name: str, value: str, expected: str) -> None:
    settings = load_settings(project)
    env = dict(init_secrets(settings.env_example, settings.env_file, dry_run=True))
    env[name] = value
    problems = secret_problems(env)
    assert any(name in p and expected in p for p in problems), problems


def test_settings_refuse_placeholder_secrets(project: Path) -> None:
    (project / "vps.env").write_text((project / "vps.env.example").read_text())
    (project / "vps.env").chmod(0o600)
    with pytest.raises(ConfigError, match="not safe to use: POSTGRES_PASSWORD is a placeholder"):
        load_settings(project).require_safe_secrets()


def test_settings_without_vps_env_say_how_to_create_it(project: Path) -> None:
    with pytest.raises(ConfigError, match="ops secrets init"):
        load_settings(project).require_safe_secrets()


def test_the_basic_auth_hash_is_bcrypt_at_cost_12(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit tier hashes at cost 4 (tests/unit/conftest.py); what `ops secrets init` writes costs 12."""
    monkeypatch.setattr(bcrypt, "gensalt", REAL_GENSALT)
    values = generate_secrets()
    assert values["BASIC_AUTH_HASH"].startswith("$2b$12$")
    assert bcrypt.checkpw(values["BASIC_AUTH_PASSWORD"].encode(), values["BASIC_AUTH_HASH"].encode())
