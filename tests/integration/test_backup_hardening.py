"""Backups on a bad night (issue #10): foreign-owned repositories, failing sources, lost objects, hangs,
locks, IAM roles without bucket access, missing credentials, and secrets on command lines.

Same real services as test_backup.py: PostgreSQL, the GCS emulator with the real client, git, zstd,
and the Qdrant contract fake.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ops import tools
from ops.backup import catalog
from ops.backup.context import BackupContext
from ops.backup.drill import run_drill
from ops.backup.restore import run_restore
from ops.backup.run import BackupFailed, run_backup
from ops.errors import ConfigError
from ops.local.processes import GcsEmulatorServer, PostgresServer, wait_until
from tests.conftest import require
from tests.fakes.qdrant import QdrantState
from tests.fakes.server import ThreadedServer
from tests.integration.test_backup import cluster, ctx, git_repo, new_context, pg_dump_wrapper, qdrant  # noqa: F401
from tests.integration.test_backup_pipeline import running

pytestmark = pytest.mark.integration
OPS = (sys.executable, "-m", "ops.cli")


@pytest.fixture
def no_git_exceptions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git with no global or system configuration (no safe.directory=*), and no SUDO_UID: as cron runs it."""
    empty = tmp_path / "gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("SUDO_UID", raising=False)


def test_a_truth_repository_owned_by_another_user_is_bundled_by_root(
    project: Path,
    new_context: Callable[..., BackupContext],  # noqa: F811
    no_git_exceptions: None,
) -> None:
    require(os.geteuid() == 0, "root (to give the repository to another user; cron runs the backup as root)")
    repo = git_repo(project / "operator-repo")
    subprocess.run(["chown", "-R", "65534:65534", str(repo)], check=True)
    refused = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert "dubious ownership" in refused.stderr  # what the nightly job hit

    context = new_context(OPS_GIT_REPO=str(repo))
    report = run_backup(context, "daily", ["git"])

    assert [e.name for e in report.entries] == ["repo.bundle"]
    clone = run_restore(context, report.run_id, "git")
    assert clone.restored and "mirror clone" in clone.restored[0]


def test_one_failing_source_keeps_the_others_good_dumps_in_a_partial_run(
    project: Path,
    new_context: Callable[..., BackupContext],  # noqa: F811
) -> None:
    (project / "plain").mkdir()
    context = new_context(OPS_GIT_REPO=str(project / "plain"))

    with pytest.raises(BackupFailed, match=r"is partial: source git failed: .*not a git repository.*; kept postgres"):
        run_backup(context, "daily", ["postgres", "git"])

    (run,) = catalog.runs(context)
    assert run.manifest is not None and run.status == "partial" and list(run.manifest.failed) == ["git"]
    assert {e.source for e in run.manifest.entries} == {"postgres"}
    assert set(run.objects) == {e.object for e in run.manifest.entries} | {context.object_name(run.run_id, "manifest.json")}
    assert run_drill(context, run.run_id).ok  # the good dumps restore
    assert run.manifest.held() == {"postgres"}  # retention never counts it as a copy of git
    # through the CLI, as cron runs it: non-zero, naming the failed source
    proc = subprocess.run(
        [*OPS, "backup", "run", "--schedule", "daily", "--source", "postgres", "--source", "git", "--project-dir", str(project)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "is partial: source git failed" in proc.stderr
    listed = subprocess.run([*OPS, "backup", "list", "--project-dir", str(project)], capture_output=True, text=True)
    assert "partial (failed: git)" in listed.stdout


def test_a_scheduled_run_that_lost_what_the_previous_one_had_fails_naming_it(
    project: Path,
    new_context: Callable[..., BackupContext],  # noqa: F811
) -> None:
    repo = git_repo(project / "truth")
    context = new_context(OPS_GIT_REPO=str(repo))
    run_backup(context, "daily", ["git"])
    repo.rename(project / "truth-moved")  # the repository is gone (a wrong OPS_GIT_REPO, a deleted volume...)

    with pytest.raises(BackupFailed, match=r"lost since the previous daily run: git/repo.bundle"):
        run_backup(context, "daily", ["git"])

    assert catalog.runs(context)[-1].status == "partial"
    assert run_backup(context, "manual", ["git"]).entries == []  # a manual run compares with nothing


def test_a_dump_that_hangs_is_killed_at_the_deadline_and_its_objects_deleted(
    new_context: Callable[..., BackupContext],  # noqa: F811
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "stuck.pid"
    # sends part of the dump, then hangs with the pipe open (a stuck server, a lost network)
    wrappers = pg_dump_wrapper(tmp_path, f"echo $$ > {pidfile}; exec sleep 600")
    context = new_context(OPS_POSTGRES_BIN_DIR=str(wrappers), OPS_BACKUP_DEADLINE_SECONDS="10")

    with pytest.raises(BackupFailed, match=r"passed its deadline of 10 s \(OPS_BACKUP_DEADLINE_SECONDS\).*killed pg_dump"):
        run_backup(context, "daily", ["postgres"])

    stuck = int(pidfile.read_text())
    wait_until(lambda: not running(stuck), 10, f"the end of the stuck pg_dump (pid {stuck})")  # killed; reaped soon after
    assert context.bucket.list(context.run_prefix()) == []  # roles.sql, stored before the hang, is gone too; no manifest


@pytest.mark.timeout(180)  # before pg_dump had --lock-wait-timeout, this waited forever
def test_pg_dump_gives_up_on_a_table_locked_longer_than_the_lock_wait(
    new_context: Callable[..., BackupContext],  # noqa: F811
    cluster: PostgresServer,  # noqa: F811
) -> None:
    context = new_context(OPS_BACKUP_LOCK_WAIT_SECONDS="2")
    locker = subprocess.Popen(
        [tools.postgres_bin("psql") or "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "app"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **cluster.libpq_env()},
    )
    assert locker.stdin is not None and locker.stdout is not None
    try:
        locker.stdin.write("BEGIN; LOCK TABLE notes IN ACCESS EXCLUSIVE MODE; \\echo locked\n")
        locker.stdin.flush()
        assert locker.stdout.readline().strip() == "locked"  # a migration holding the table

        with pytest.raises(BackupFailed, match=r"a table of app stayed locked longer than OPS_BACKUP_LOCK_WAIT_SECONDS \(2 s\)"):
            run_backup(context, "daily", ["postgres"])
    finally:
        locker.stdin.close()
        locker.kill()
        locker.wait()
    assert context.bucket.list(context.run_prefix()) == []


def test_a_backup_needs_only_object_permissions(
    ctx: BackupContext,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    new_context: Callable[..., BackupContext],  # noqa: F811
) -> None:
    from google.api_core import exceptions
    from google.cloud.storage import Bucket

    # the Storage Object Admin role: any call on the bucket's own metadata (storage.buckets.get) is refused
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise exceptions.Forbidden("caller does not have storage.buckets.get access to the bucket")  # type: ignore[no-untyped-call]

    monkeypatch.setattr(Bucket, "exists", forbidden)
    monkeypatch.setattr(Bucket, "reload", forbidden)

    report = run_backup(ctx, "daily", ["git", "postgres"])

    assert catalog.load(ctx, report.run_id).entries == report.entries
    assert run_drill(ctx, report.run_id).ok
    missing = new_context(OPS_BACKUP_BUCKET="no-such-bucket")
    with pytest.raises(ConfigError, match=r"GCS bucket 'no-such-bucket' does not exist \(OPS_BACKUP_BUCKET\)"):
        run_backup(missing, "daily", ["git"])


def test_gcs_errors_and_missing_credentials_are_one_sentence_not_a_traceback(
    project: Path,
    new_context: Callable[..., BackupContext],  # noqa: F811
    gcs: GcsEmulatorServer,
    tmp_path: Path,
) -> None:
    new_context(OPS_BACKUP_BUCKET="no-such-bucket")
    where = ["--project-dir", str(project)]
    for command in (["list"], ["verify"], ["prune", "--dry-run"], ["run", "--source", "git"]):
        proc = subprocess.run([*OPS, "backup", *command, *where], capture_output=True, text=True)
        assert proc.returncode == 2, (command, proc.stderr)
        assert "GCS bucket 'no-such-bucket' does not exist" in proc.stderr and "Traceback" not in proc.stderr, command

    # a drill from a laptop: the real endpoint, no emulator, no application default credentials
    with (project / "vps.env").open("a") as env_file:
        env_file.write(f"OPS_BACKUP_BUCKET={gcs.bucket}\nOPS_BACKUP_GCS_ENDPOINT=\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS")}
    env.update(HOME=str(home), GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9")  # no VM to ask either
    proc = subprocess.run([*OPS, "backup", "drill", *where], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"no Google credentials to reach GCS bucket '{gcs.bucket}'" in proc.stderr
    assert "gcloud auth application-default login" in proc.stderr and "OPS_BACKUP_GCS_CREDENTIALS" in proc.stderr


def test_the_qdrant_api_key_is_on_no_command_line_during_a_restore(
    ctx: BackupContext,  # noqa: F811
    qdrant: tuple[ThreadedServer, QdrantState],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, state = qdrant
    backup = run_backup(ctx, "daily", ["qdrant"])
    started: list[list[str]] = []
    real = subprocess.Popen

    class Recording(real):  # type: ignore[misc,valid-type]
        """The real Popen, noting each child's command line (what `ps` shows every user)."""

        def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
            started.append([str(a) for a in args])
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    state.collections.pop("memories_restored", None)

    run_restore(ctx, backup.run_id, "qdrant")

    assert state.collections["memories_restored"] == state.collections["memories"]  # it did restore, with the key
    assert any("ops.backup.upload" in argv for argv in started)
    assert not [argv for argv in started if any(state.api_key in word for word in argv)]
