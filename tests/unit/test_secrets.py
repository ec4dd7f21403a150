import os
from pathlib import Path

import bcrypt
import pytest

from ops.config import load_settings
from ops.envfile import read_env_file
from ops.errors import ConfigError
from ops.secrets import (
    DERIVED,
    GENERATED,
    add_missing_secrets,
    generate_secrets,
    init_secrets,
    is_placeholder,
    secret_problems,
)
from tests.unit.cli import run_ops
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


def _older_env(project: Path, *dropped: str) -> Path:
    """A vps.env written by an older release: generated, then without the secrets named."""
    settings = load_settings(project)
    init_secrets(settings.env_example, settings.env_file)
    kept = [line for line in settings.env_file.read_text().splitlines() if line.split("=", 1)[0] not in dropped]
    settings.env_file.write_text("\n".join(kept) + "\n")
    settings.env_file.chmod(0o600)
    return settings.env_file


def test_add_missing_appends_only_what_an_older_env_lacks(project: Path) -> None:
    env_file = _older_env(project, "N8N_WEBHOOK_SECRET", "QDRANT_API_KEY")
    before_text, before = env_file.read_text(), read_env_file(env_file)
    assert "N8N_WEBHOOK_SECRET is missing; `ops secrets add-missing` generates it" in secret_problems(before)

    assert add_missing_secrets(env_file) == ["N8N_WEBHOOK_SECRET", "QDRANT_API_KEY"]
    after = read_env_file(env_file)
    assert env_file.read_text().startswith(before_text.rstrip("\n"))  # every line kept as it was
    assert {k: after[k] for k in before} == before  # no existing secret changed
    assert secret_problems(after) == []
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert add_missing_secrets(env_file) == []  # a second run adds nothing
    assert read_env_file(env_file) == after


def test_add_missing_keeps_a_placeholder_and_a_hash_whose_password_is_gone(project: Path) -> None:
    env_file = _older_env(project, "BASIC_AUTH_PASSWORD")
    env_file.write_text(env_file.read_text().replace("REDIS_PASSWORD=", "REDIS_PASSWORD=changeme#", 1))
    hashed = read_env_file(env_file)["BASIC_AUTH_HASH"]
    assert add_missing_secrets(env_file) == []  # the hash stays the operator's; a new password would not match it
    assert read_env_file(env_file)["BASIC_AUTH_HASH"] == hashed
    assert read_env_file(env_file)["REDIS_PASSWORD"].startswith("changeme")  # a live password is never replaced


def test_add_missing_dry_run_and_no_env(project: Path) -> None:
    env_file = _older_env(project, "N8N_WEBHOOK_SECRET")
    text = env_file.read_text()
    assert run_ops("secrets", "add-missing", "--dry-run", "--project-dir", str(project)).stdout.startswith(
        "would add N8N_WEBHOOK_SECRET to "
    )
    assert env_file.read_text() == text
    ran = run_ops("secrets", "add-missing", "--project-dir", str(project))
    assert ran.returncode == 0 and "added N8N_WEBHOOK_SECRET" in ran.stdout
    env_file.unlink()
    with pytest.raises(ConfigError, match="does not exist; `ops secrets init` writes a new one"):
        add_missing_secrets(env_file)


def test_add_missing_follows_a_symlinked_env_and_keeps_its_owner(project: Path) -> None:
    env_file = _older_env(project, "N8N_WEBHOOK_SECRET")
    real = project / "secrets" / "vps.env"
    real.parent.mkdir()
    env_file.rename(real)
    env_file.symlink_to(real)
    owner = (real.stat().st_uid, real.stat().st_gid)
    if os.geteuid() == 0:  # as root (CI), the file must stay its owner's, not become root's
        os.chown(real, 12345, 12345)
        owner = (12345, 12345)
    assert add_missing_secrets(env_file) == ["N8N_WEBHOOK_SECRET"]
    assert env_file.is_symlink() and "N8N_WEBHOOK_SECRET" in read_env_file(real)
    assert (real.stat().st_uid, real.stat().st_gid) == owner and real.stat().st_mode & 0o777 == 0o600
