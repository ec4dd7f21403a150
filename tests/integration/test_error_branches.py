"""Error branches on the real parts (issue #14, item 3): GCS cut mid-upload and at the manifest, a live
restore cut halfway, and delete events.

Real PostgreSQL 18 with the real pg_restore fed a truncated stream, the GCS emulator with the real client
(behind a loopback TCP proxy that cuts the connection: the network, not a fake of GCS), real Redis and
real git with a bare remote.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from google.cloud.storage import retry as storage_retry

from ops import tools
from ops.backup import catalog
from ops.backup import gcs as gcs_module
from ops.backup.context import BackupContext
from ops.backup.manifest import BackupNotFound, run_time
from ops.backup.restore import run_restore
from ops.backup.retention import plan_prune
from ops.backup.run import BackupFailed, run_backup
from ops.backup.sources import postgres as pg_source
from ops.errors import OpsError
from ops.events.publisher import Publisher
from ops.local.processes import LOOPBACK, GcsEmulatorServer
from tests.integration.test_backup import cluster, git_repo, new_context, qdrant  # noqa: F401
from tests.integration.test_events import client, drain, event, git, observer_for, remote, subjects, work  # noqa: F401

pytestmark = pytest.mark.integration


class CuttingProxy:
    """A TCP proxy on loopback to `port` that cuts the network once the client has sent `trigger` and then
    `after` more bytes: every open connection is closed (a reset); with `stay_down` every later connection
    too, until `restore()`."""

    def __init__(self, port: int, trigger: bytes, after: int, stay_down: bool) -> None:
        self.port, self.trigger, self.after, self.stay_down = port, trigger, after, stay_down
        self.cut = threading.Event()
        self._seen: int | None = None
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener = socket.create_server((LOOPBACK, 0))
        self.url = f"http://{LOOPBACK}:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def restore(self) -> None:
        self.stay_down = False

    def close(self) -> None:
        self._listener.close()
        self._reset_all()

    def _reset_all(self) -> None:
        with self._lock:
            for sock in self._open:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.cut.is_set() and self.stay_down:
                client.close()
                continue
            upstream = socket.create_connection((LOOPBACK, self.port))
            with self._lock:
                self._open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_client and not self.cut.is_set():
                    with self._lock:
                        if self._seen is None and self.trigger in data:
                            self._seen = len(data) - data.index(self.trigger)
                        elif self._seen is not None:
                            self._seen += len(data)
                        cutting = self._seen is not None and self._seen >= self.after
                    if cutting:
                        self.cut.set()
                        self._reset_all()
                        return
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def cut_gcs(gcs: GcsEmulatorServer) -> Iterator[Callable[..., CuttingProxy]]:
    proxies: list[CuttingProxy] = []

    def make(trigger: bytes, after: int = 0, stay_down: bool = False) -> CuttingProxy:
        proxies.append(CuttingProxy(gcs.port, trigger, after, stay_down))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


def test_a_gcs_connection_cut_mid_upload_fails_that_source_naming_gcs_and_keeps_no_partial_object(
    project: Path,
    new_context: Callable[..., BackupContext],  # noqa: F811
    cut_gcs: Callable[..., CuttingProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gcs_module, "UPLOAD_CHUNK", 256 << 10)  # the smallest chunk GCS takes: several chunks here
    repo = git_repo(project / "truth")
    (repo / "blob.bin").write_bytes(os.urandom(2 << 20))  # a bundle of 2 MiB zstd cannot shrink
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "big"], check=True)
    # the connection is cut after 600 KB of the bundle's upload (two chunks went through), then comes back
    proxy = cut_gcs(b"repo.bundle", after=600_000)
    ctx = new_context(OPS_GIT_REPO=str(repo), OPS_BACKUP_GCS_ENDPOINT=proxy.url)

    with pytest.raises(BackupFailed) as failed:
        run_backup(ctx, "daily", ["postgres", "git"])

    assert proxy.cut.is_set()
    message = str(failed.value)
    assert "\n" not in message
    assert "is partial: source git failed:" in message and "GCS" in message and "repo.bundle" in message
    (run,) = catalog.runs(ctx)
    # no partial bundle was finalized; the manifest holds only postgres, and never counts as a copy of git
    assert not [name for name in run.objects if "repo.bundle" in name]
    assert run.manifest is not None and run.status == "partial" and list(run.manifest.failed) == ["git"]
    assert run.manifest.held() == {"postgres"}
    assert set(run.objects) == {e.object for e in run.manifest.entries} | {ctx.object_name(run.run_id, "manifest.json")}


def test_a_gcs_blip_at_the_manifest_write_is_retried_and_the_run_is_good(
    new_context: Callable[..., BackupContext],  # noqa: F811
    cut_gcs: Callable[..., CuttingProxy],
) -> None:
    proxy = cut_gcs(b"manifest.json")  # one cut, then GCS answers again
    ctx = new_context(OPS_BACKUP_GCS_ENDPOINT=proxy.url)

    report = run_backup(ctx, "daily", ["postgres"])

    assert proxy.cut.is_set()
    assert catalog.load(ctx).run_id == report.run_id  # the client retried the write: a complete run


def test_gcs_down_at_the_manifest_write_fails_naming_gcs_and_leaves_an_incomplete_run_for_prune(
    new_context: Callable[..., BackupContext],  # noqa: F811
    cut_gcs: Callable[..., CuttingProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the client retries a lost connection for 120 s (google-cloud-storage's DEFAULT_RETRY): 3 s here
    monkeypatch.setattr(storage_retry.DEFAULT_RETRY, "_timeout", 3.0)
    monkeypatch.setattr(storage_retry.DEFAULT_RETRY, "_deadline", 3.0)
    proxy = cut_gcs(b"manifest.json", stay_down=True)
    ctx = new_context(OPS_BACKUP_GCS_ENDPOINT=proxy.url)

    with pytest.raises(BackupFailed) as failed:
        run_backup(ctx, "daily", ["postgres"])

    assert proxy.cut.is_set()
    message = str(failed.value)
    assert "\n" not in message and "GCS" in message and "manifest.json" in message
    proxy.restore()
    with pytest.raises(BackupNotFound):
        catalog.load(ctx)  # no manifest: nothing of the run is usable
    # the bucket was unreachable: the dumps are left, the run is incomplete and prune deletes it once past grace
    (run,) = catalog.runs(ctx)
    assert run.status == "incomplete" and run.objects
    later = plan_prune([run], run_time(run.run_id) + timedelta(days=2), timedelta(days=7), timedelta(days=28))
    assert [run_id for run_id, _ in later.delete] == [run.run_id]


def cut_pg_restore(tmp_path: Path, on: str, keep: int) -> Path:
    """Return a directory of the Postgres programs whose pg_restore into database `on` gets only `keep` bytes."""
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    real = Path(tools.postgres_bin("pg_restore") or "pg_restore").parent
    for program in ("psql", "pg_dump", "pg_dumpall"):
        (wrappers / program).symlink_to(real / program)
    (wrappers / "pg_restore").write_text(
        "#!/bin/bash\n"
        f'for a in "$@"; do [ "$a" = {on} ] && {{ head -c {keep} | "{real}/pg_restore" "$@"; exit $?; }}; done\n'
        f'exec "{real}/pg_restore" "$@"\n'
    )
    (wrappers / "pg_restore").chmod(0o755)
    return wrappers


def test_a_live_restore_cut_halfway_leaves_the_database_as_it_was_and_the_safety_backup(
    new_context: Callable[..., BackupContext],  # noqa: F811
    tmp_path: Path,
) -> None:
    # "app" sorts second among the databases (after "aaa"); its restore gets a stream cut after 40,000 bytes
    cluster_psql = new_context().postgres.psql()
    cluster_psql.query("DROP DATABASE IF EXISTS aaa")
    cluster_psql.query("CREATE DATABASE aaa")
    ctx = new_context(OPS_POSTGRES_BIN_DIR=str(cut_pg_restore(tmp_path, "app", 40000)))
    ctx.postgres.psql("aaa").query("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
    backup = run_backup(ctx, "daily", ["postgres"])
    assert [e.name for e in backup.entries if e.meta.get("database")][:2] == ["aaa.dump", "app.dump"]
    # what the user did since the backup: rows the restore would replace
    ctx.postgres.psql("aaa").query("INSERT INTO t VALUES (2)")
    ctx.postgres.psql("app").query("DELETE FROM events WHERE id > 1000; INSERT INTO audit.log VALUES (now(), 'after')")
    before = pg_source.fingerprints(ctx.postgres, "app")

    with pytest.raises(OpsError) as failed:
        run_restore(ctx, backup.run_id, "postgres", into="live")

    message = str(failed.value)
    assert "\n" not in message and "pg_restore" in message
    safety_id = message.rsplit("in the safety backup ", 1)[1]
    # the single transaction rolled back: app is exactly as it was before the restore, not half-replaced
    assert pg_source.fingerprints(ctx.postgres, "app") == before
    assert ctx.postgres.psql("aaa").query("SELECT count(*) FROM t") == [["1"]]  # the first one was restored
    # and the safety backup holds what was there before, restorable
    safety = catalog.load(ctx, safety_id)
    assert safety.schedule == "pre-restore" and safety.status == "complete"
    assert safety.select("postgres", "app.dump")[0].meta["tables"]["public.events"][0] == "1000"
    assert safety.select("postgres", "aaa.dump")[0].meta["tables"]["public.t"][0] == "2"


def test_delete_events_wait_for_approval_then_commit_and_a_missing_file_is_a_no_op(
    client: redis.Redis,  # noqa: F811
    work: Path,  # noqa: F811
    remote: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    publisher, observer = Publisher(client), observer_for(client, work, tmp_path)
    publisher.publish(event("project:p", 1, "/tasks/task-1", data={"title": "Buy milk"}))
    publisher.publish(event("project:p", 2, "/tasks/task-1", action="task_deleted"))
    drain(observer)

    # the delete is held: the file is still in the remote
    assert subjects(remote) == ["task_created: /tasks/task-1", "start"]
    assert git(remote, "show", "main:tasks/task-1.json") == '{\n  "title": "Buy milk"\n}'
    (held,) = observer.store.list("pending")
    assert held.event["version"] == 2 and held.reason == "it deletes a file"

    observer.store.decide(f"cr_{held.event['event_id']}", True, "alice")
    drain(observer)
    assert subjects(remote) == ["task_deleted: /tasks/task-1", "task_created: /tasks/task-1", "start"]
    assert "tasks/task-1.json" not in git(remote, "ls-tree", "-r", "--name-only", "main").splitlines()
    assert not (work / "tasks" / "task-1.json").exists()

    # deleting a file that is not there: approved, applied, nothing committed, nothing failed
    publisher.publish(event("project:p", 3, "/tasks/never-was", action="delete"))
    drain(observer)
    (missing,) = observer.store.list("pending")
    observer.store.decide(f"cr_{missing.event['event_id']}", True, "alice")
    drain(observer)
    assert subjects(remote)[0] == "task_deleted: /tasks/task-1"
    assert {c.status for c in observer.store.list()} == {"applied"}
    assert observer.store.list("failed") == [] and observer.applied_version("project:p") == 3
