"""ops recover's pure parts: the key guard, the identity given at run time, which backup it picks, its refusals."""

from __future__ import annotations

import hashlib
import hmac
import io
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from click.testing import CliRunner

from ops import keyguard, recover
from ops.backup import catalog, identity
from ops.backup.catalog import RunInfo
from ops.backup.context import BackupContext
from ops.backup.identity import identity_file
from ops.backup.manifest import BackupNotFound, Entry, Manifest, new_run_id
from ops.cli import main
from ops.config import load_settings
from ops.errors import ConfigError
from ops.secrets import generate_secrets, render_env

KEYS = {"N8N_ENCRYPTION_KEY": "a" * 64, "LITELLM_SALT_KEY": "sk-" + "b" * 48, "LANGFUSE_ENCRYPTION_KEY": "c" * 64}
NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def test_a_fingerprint_names_a_key_without_holding_it() -> None:
    prints = keyguard.fingerprints({**KEYS, "OTHER": "x"})
    assert set(prints) == set(KEYS)
    for name, value in KEYS.items():
        assert keyguard.matches(prints[name], value) and not keyguard.matches(prints[name], value + "x")
        assert value not in prints[name] and value not in keyguard.record_sql(KEYS)
    assert keyguard.differing(prints, KEYS) == []


def test_a_fingerprint_of_a_weak_key_cannot_be_looked_up_or_tested_with_a_fast_hash() -> None:
    # the manifest holding the fingerprints is stored in clear: whoever reads the bucket may try guesses
    weak = "summer2026"
    fast = hmac.new(keyguard.LABEL, weak.encode(), hashlib.sha256).hexdigest()
    first, second = keyguard.fingerprint(weak), keyguard.fingerprint(weak)
    assert first != second  # salted: no table of guesses made once serves every install
    assert fast[:16] not in first and keyguard.matches(first, weak) and keyguard.matches(second, weak)


def test_fingerprints_recorded_before_the_salt_still_name_their_key() -> None:
    legacy = hmac.new(keyguard.LABEL, KEYS["N8N_ENCRYPTION_KEY"].encode(), hashlib.sha256).hexdigest()[:16]
    assert keyguard.differing({"N8N_ENCRYPTION_KEY": legacy}, KEYS) == []
    assert keyguard.differing({"N8N_ENCRYPTION_KEY": legacy}, {**KEYS, "N8N_ENCRYPTION_KEY": "f" * 64}) == ["N8N_ENCRYPTION_KEY"]
    assert keyguard.differing({"N8N_ENCRYPTION_KEY": "'; DROP TABLE x; --"}, KEYS) == ["N8N_ENCRYPTION_KEY"]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (KEYS, []),
        ({**KEYS, "N8N_ENCRYPTION_KEY": "d" * 64}, ["N8N_ENCRYPTION_KEY"]),
        ({k: v for k, v in KEYS.items() if k != "LANGFUSE_ENCRYPTION_KEY"}, ["LANGFUSE_ENCRYPTION_KEY"]),  # missing now
        (
            {**KEYS, "LITELLM_SALT_KEY": "sk-new", "LANGFUSE_ENCRYPTION_KEY": "e" * 64},
            ["LITELLM_SALT_KEY", "LANGFUSE_ENCRYPTION_KEY"],
        ),
    ],
)
def test_the_guard_names_each_key_that_differs_from_the_recorded_one(env: dict[str, str], named: list[str]) -> None:
    recorded = keyguard.fingerprints(KEYS)
    assert keyguard.differing(recorded, env) == named
    if named:
        with pytest.raises(keyguard.KeyMismatch, match=", ".join(named) + " in vps.env"):
            keyguard.check(recorded, env, "backup x")
    else:
        keyguard.check(recorded, env, "backup x")
    keyguard.check({}, env, "an old backup")  # nothing recorded: nothing to refuse


def test_n8ns_settings_file_gives_its_key() -> None:
    assert keyguard.n8n_settings_key('{"encryptionKey": "k1"}') == "k1"
    assert keyguard.n8n_settings_key("not json") == "" and keyguard.n8n_settings_key("[1]") == ""


def test_an_identity_on_stdin_lives_in_a_private_file_only_while_the_command_runs() -> None:
    key = b"# created: now\nAGE-SECRET-KEY-1QQQ\n"
    with identity_file("-", io.BytesIO(key)) as path:
        assert path.read_bytes() == key and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.exists()
    with pytest.raises(ConfigError, match="stdin holds no age identity"), identity_file("-", io.BytesIO(b"nothing")):
        pass
    with pytest.raises(ConfigError, match="does not exist"), identity_file("/no/such/key", io.BytesIO()):
        pass


def run(days_ago: float, kind: str, sources: tuple[str, ...], failed: tuple[str, ...] = ()) -> RunInfo:
    run_id = new_run_id(kind, NOW - timedelta(days=days_ago))
    entries = [Entry(s, f"{s}.x", f"b/{run_id}/{s}/{s}.x.zst", 1, "0" * 64, 0.1) for s in sources if s not in failed]
    manifest = Manifest(run_id, kind, "", entries=entries, sources=list(sources), failed={s: "broke" for s in failed})
    return RunInfo(run_id, True, [e.object for e in entries], manifest=manifest)


@pytest.mark.parametrize(
    ("runs", "main_index", "volumes_index"),
    [
        ([run(8, "weekly", ("volumes",)), run(2, "weekly", ("volumes",)), run(1, "daily", ("postgres", "git"))], 2, 1),
        ([run(1, "daily", ("postgres",)), run(0.5, "pre-restore", ("postgres",))], 0, None),  # a safety copy is no backup
        ([run(2, "daily", ("postgres",)), run(1, "daily", ("postgres", "qdrant"), failed=("qdrant",))], 0, None),  # partial
        ([run(9, "weekly", ("volumes",)), run(3, "daily", ("postgres",)), run(2.9, "weekly", ("volumes",))], 1, 2),  # nearest
        ([run(1, "manual", ("postgres", "volumes"))], 0, 0),
        # the volumes the operator rolled back (a pre-restore run) are nearer in time, and still not taken
        ([run(1.5, "weekly", ("volumes",)), run(1, "daily", ("postgres",)), run(0.8, "pre-restore", ("volumes",))], 1, 0),
        # nor a partial run's volumes
        (
            [
                run(3, "weekly", ("volumes",)),
                run(1, "daily", ("postgres",)),
                run(1.1, "weekly", ("volumes", "qdrant"), ("qdrant",)),
            ],
            1,
            0,
        ),
    ],
)
def test_recover_picks_the_newest_complete_backup_and_the_volumes_nearest_to_it(
    monkeypatch: pytest.MonkeyPatch, runs: list[RunInfo], main_index: int, volumes_index: int | None
) -> None:
    monkeypatch.setattr(catalog, "runs", lambda ctx: runs)
    main_run, volumes = recover.choose(cast(BackupContext, Ctx()), None)
    assert main_run.run_id == runs[main_index].run_id
    assert (volumes.run_id if volumes else None) == (runs[volumes_index].run_id if volumes_index is not None else None)


def test_without_a_backup_holding_postgres_recover_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "runs", lambda ctx: [run(1, "weekly", ("volumes",))])
    with pytest.raises(BackupNotFound, match="no complete backup with postgres in gs://b/backups/"):
        recover.choose(cast(BackupContext, Ctx()), None)


class Bucket:
    name = "b"


class Ctx:
    bucket = Bucket()

    def run_prefix(self) -> str:
        return "backups/"


def test_recover_needs_the_bucket_and_asks_for_it(project: Path) -> None:
    with pytest.raises(ConfigError, match="ops recover needs the bucket: OPS_BACKUP_BUCKET=<bucket>"):
        recover.run_recover(load_settings(project))


def test_an_encrypted_backup_without_an_identity_is_refused_before_anything(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encrypted = run(1, "daily", ("postgres", "secrets"))
    assert encrypted.manifest is not None
    encrypted.manifest.encrypted = True
    monkeypatch.setenv("OPS_BACKUP_BUCKET", "b")
    monkeypatch.setattr(recover, "backup_context", fake_context)
    monkeypatch.setattr(catalog, "runs", lambda ctx: [encrypted])
    with pytest.raises(ConfigError, match="is encrypted: give its age identity with --identity FILE"):
        recover.run_recover(load_settings(project))


def test_a_backup_without_vps_env_on_a_host_without_one_is_refused(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_BACKUP_BUCKET", "b")
    monkeypatch.setattr(recover, "backup_context", fake_context)
    monkeypatch.setattr(catalog, "runs", lambda ctx: [run(1, "daily", ("postgres",))])
    with pytest.raises(ConfigError, match=r"holds no vps.env .* put the old vps.env in"):
        recover.run_recover(load_settings(project))


def test_a_fresh_vps_env_over_a_backups_keys_is_refused_naming_them(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = run(1, "daily", ("postgres", "secrets"))
    assert old.manifest is not None
    secrets = old.manifest.entries[1]
    old.manifest.entries[1] = Entry(**{**secrets.__dict__, "meta": {"keys": keyguard.fingerprints(KEYS)}})
    (project / "vps.env").write_text("".join(f"{k}={v}\n" for k, v in {**KEYS, "N8N_ENCRYPTION_KEY": "f" * 64}.items()))
    monkeypatch.setenv("OPS_BACKUP_BUCKET", "b")
    monkeypatch.setattr(recover, "backup_context", fake_context)
    monkeypatch.setattr(catalog, "runs", lambda ctx: [old])
    asked: list[str] = []  # the host checks a real run makes first (Docker: tests/stack/test_recover_on_docker.py)
    monkeypatch.setattr(recover, "_require_empty", lambda ctx: asked.append("empty"))
    monkeypatch.setattr(recover, "_require_volume_targets", lambda ctx, entries: asked.append("volumes"))
    with pytest.raises(keyguard.KeyMismatch, match=r"^N8N_ENCRYPTION_KEY in vps.env is not the key the data in backup "):
        recover.run_recover(load_settings(project), dry_run=True)
    assert asked == []  # the keys are refused before the host is asked
    (project / "vps.env").write_text("".join(f"{k}={v}\n" for k, v in KEYS.items()))
    report = recover.run_recover(load_settings(project), dry_run=True)  # the old keys: recover goes ahead
    assert report.planned == ["secrets/secrets.x", "postgres/postgres.x"] and asked == ["empty", "volumes"]


def fake_context(settings: Any) -> Any:
    class Codec:
        identity = None

    class Context(Ctx):
        codec = Codec()
        deadline_seconds = 60

    return Context()


def test_the_cli_wants_yes_when_the_identity_comes_on_stdin(project: Path) -> None:
    result = CliRunner().invoke(main, ["recover", "--identity", "-", "--project-dir", str(project)], input="x")
    assert result.exit_code == 2 and "--identity - reads stdin: add --yes" in result.output
    assert not (project / "vps.env").exists()  # refused before anything was written


def test_an_identity_on_stdin_is_never_written_to_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "SHM", Path("/no/such/shm"))
    with pytest.raises(ConfigError, match="/no/such/shm"), identity_file("-", io.BytesIO(b"AGE-SECRET-KEY-1QQQ\n")):
        pass


@pytest.mark.parametrize("not_empty_at", [1, 2])  # 2: seen only under the restored vps.env's COMPOSE_PROJECT_NAME
def test_a_host_that_is_not_empty_is_refused_with_no_vps_env_left_behind(
    project: Path, monkeypatch: pytest.MonkeyPatch, not_empty_at: int
) -> None:
    checks: list[int] = []

    def require_empty(ctx: Any) -> None:
        checks.append(1)
        if len(checks) == not_empty_at:
            raise ConfigError("this host is not empty: compose project p has volume p_n8n-data")

    class Secrets:
        @staticmethod
        def restore(ctx: Any, entry: Entry, into: str, feed: Any) -> str:
            example = (project / "vps.env.example").read_text()
            (project / "vps.env").write_text(render_env(example, generate_secrets()))
            return "vps.env restored"

    monkeypatch.setenv("OPS_BACKUP_BUCKET", "b")
    monkeypatch.setattr(recover, "backup_context", fake_context)
    monkeypatch.setattr(recover, "feeder", lambda *args: None)
    monkeypatch.setattr(recover, "get_source", lambda name: Secrets)
    monkeypatch.setattr(recover, "_require_empty", require_empty)
    monkeypatch.setattr(catalog, "runs", lambda ctx: [run(1, "daily", ("postgres", "secrets"))])
    with pytest.raises(ConfigError, match="this host is not empty"):
        recover.run_recover(load_settings(project))
    assert not (project / "vps.env").exists()  # refused: nothing written


def test_volumes_of_another_compose_project_are_refused_before_anything_is_written() -> None:
    # a recover test in a second checkout (COMPOSE_PROJECT_NAME=drtest) beside production's aistack_* volumes
    ctx = cast(BackupContext, SimpleNamespace(compose_project="drtest", docker=("docker",)))
    entries = [Entry("volumes", "n8n-data", "b/r/volumes/n8n-data.tar.zst", 1, "0" * 64, 0.1, {"volume": "aistack_n8n-data"})]
    with pytest.raises(
        ConfigError, match=r"volumes aistack_n8n-data do not belong to compose project 'drtest' .*COMPOSE_PROJECT_NAME"
    ):
        recover._require_volume_targets(ctx, entries)


def test_a_run_whose_objects_the_bucket_lacks_is_not_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    # an object deleted or lost since: found before anything is written, not after the volumes are
    older, newer = run(2, "daily", ("postgres",)), run(1, "daily", ("postgres",))
    newer.objects.clear()
    monkeypatch.setattr(catalog, "runs", lambda ctx: [older, newer])
    assert recover.choose(cast(BackupContext, Ctx()), None)[0].run_id == older.run_id
    monkeypatch.setattr(catalog, "load", lambda ctx, run_id: newer.manifest)
    with pytest.raises(
        BackupNotFound, match=rf"backup {newer.run_id} lacks objects its manifest lists: b/{newer.run_id}/postgres"
    ):
        recover.choose(cast(BackupContext, Ctx()), newer.run_id)
