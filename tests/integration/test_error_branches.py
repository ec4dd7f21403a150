"""Error branches on the real parts (issue #14, item 3): a live restore cut halfway and delete events.

Real PostgreSQL 18 with the real pg_restore fed a truncated stream, the GCS emulator with the real client,
real Redis and real git with a bare remote.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from ops import tools
from ops.backup import catalog
from ops.backup.restore import run_restore
from ops.backup.run import run_backup
from ops.backup.sources import postgres as pg_source
from ops.errors import OpsError
from ops.events.publisher import Publisher
from ops.local.processes import GcsEmulatorServer, PostgresServer
from tests.fakes.qdrant import QdrantState
from tests.fakes.server import ThreadedServer
from tests.integration.test_backup import cluster, make_context, qdrant  # noqa: F401
from tests.integration.test_events import client, drain, event, git, observer_for, remote, subjects, work  # noqa: F401

pytestmark = pytest.mark.integration


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
    project: Path,
    cluster: PostgresServer,  # noqa: F811
    gcs: GcsEmulatorServer,
    qdrant: tuple[ThreadedServer, QdrantState],  # noqa: F811
    tmp_path: Path,
) -> None:
    # "app" sorts second among the databases (after "aaa"); its restore gets a stream cut after 40,000 bytes
    cluster_psql = make_context(project, cluster, gcs, qdrant).postgres.psql()
    cluster_psql.query("DROP DATABASE IF EXISTS aaa")
    cluster_psql.query("CREATE DATABASE aaa")
    ctx = make_context(project, cluster, gcs, qdrant, OPS_POSTGRES_BIN_DIR=str(cut_pg_restore(tmp_path, "app", 40000)))
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
