"""The secrets and state backup sources and the key guard's table, on real PostgreSQL, GCS emulator, age and tar."""

# ruff: noqa: F811 - the fixtures are test_backup's, imported by name

from __future__ import annotations

import dataclasses
import io
import json
import signal
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from ops import keyguard
from ops.backup import catalog
from ops.backup.context import BackupContext
from ops.backup.manifest import Entry
from ops.backup.pipeline import Command
from ops.backup.restore import run_restore
from ops.backup.run import BackupFailed, run_backup
from ops.backup.sources import state
from ops.config import load_settings
from ops.envfile import read_env_file
from ops.recover import _check_key_table
from tests.conftest import REPO
from tests.integration.test_backup import age_keys, cluster, new_context, qdrant  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration
OPS = (sys.executable, "-m", "ops.cli")


def test_vps_env_is_never_stored_in_clear(new_context: Callable[..., BackupContext]) -> None:
    ctx = new_context()
    assert "secrets" not in run_backup(ctx, "daily", dry_run=True).planned  # scheduled: left out, said in the log
    with pytest.raises(
        BackupFailed, match=r"vps.env is not backed up: backups are not encrypted.* set OPS_BACKUP_AGE_RECIPIENTS"
    ):
        run_backup(ctx, "manual", ["secrets"])
    assert not [o for o in ctx.bucket.list(ctx.run_prefix()) if "secrets" in o.name]


def test_vps_env_is_backed_up_encrypted_with_its_keys_fingerprints_and_restores_private(
    new_context: Callable[..., BackupContext],
    age_keys: tuple[str, Path, Path],
) -> None:
    recipient, identity, _ = age_keys
    ctx = new_context(OPS_BACKUP_AGE_RECIPIENTS=recipient, OPS_BACKUP_AGE_IDENTITY=str(identity))
    assert "secrets" in run_backup(ctx, "daily", dry_run=True).planned
    env_file = ctx.project_dir / "vps.env"
    env = read_env_file(env_file)

    report = run_backup(ctx, "manual", ["secrets"])

    (entry,) = report.entries
    stored = b"".join(ctx.bucket.read(entry.object))
    assert stored.startswith(b"age-encryption.org/v1") and env["N8N_ENCRYPTION_KEY"].encode() not in stored
    assert set(entry.meta["keys"]) == set(keyguard.KEYS) and keyguard.differing(entry.meta["keys"], env) == []
    run_restore(ctx, report.run_id)
    copy = ctx.project_dir / ".ops" / "restore" / f"vps.env-{report.run_id}"
    assert copy.read_bytes() == env_file.read_bytes() and stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert not list(copy.parent.glob(".vps.env.restoring-*"))  # the staging file became the copy


def test_ops_state_is_backed_up_without_locks_partial_snapshots_or_restores(new_context: Callable[..., BackupContext]) -> None:
    ctx = new_context()
    assert not ctx.codec.encrypted
    ops_dir = ctx.project_dir / ".ops"
    for name in ("changes/cr-7.json", "snapshots/a/state.json", "snapshots/b.partial/state.json", "slices.lock",
                 "restore/git-x/HEAD", "events/queue.tmp", "applied/slice04/Caddyfile",
                 "upgrades/x/databases/n8n.dump",  # ops upgrade's local copies: the postgres source holds the data
                 "applied/slice01/vps.env", "deployed/vps.env"):  # not encrypted here: secrets never in clear  # fmt: skip
        (ops_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (ops_dir / name).write_text(name)

    report = run_backup(ctx, "manual", ["state"])
    run_restore(ctx, report.run_id)

    restored = ops_dir / "restore" / f"state-{report.run_id}" / ".ops"
    files = sorted(str(p.relative_to(restored)) for p in restored.rglob("*") if p.is_file())
    assert files == ["applied/slice04/Caddyfile", "changes/cr-7.json", "snapshots/a/state.json"]


def test_the_keys_fingerprints_travel_in_the_dump_and_a_fresh_key_over_them_is_refused(
    new_context: Callable[..., BackupContext],
) -> None:
    ctx = new_context()
    env = read_env_file(ctx.project_dir / "vps.env")

    report = run_backup(ctx, "manual", ["postgres"])

    tables = catalog.load(ctx, report.run_id).select("postgres", "postgres.dump")[0].meta["tables"]
    assert tables[f"public.{keyguard.TABLE}"][0] == "3"
    settings = load_settings(ctx.project_dir)
    assert _check_key_table(ctx, settings) == ""  # the same keys: nothing to say
    fresh = settings.env_file.read_text().replace(env["LITELLM_SALT_KEY"], "sk-" + "9" * 48)
    settings.env_file.write_text(fresh)
    with pytest.raises(keyguard.KeyMismatch, match=r"^LITELLM_SALT_KEY in vps.env is not the key .*\(table ops_key_guard\)"):
        _check_key_table(ctx, load_settings(ctx.project_dir))
    # a dump from before the key guard: nothing to compare with, said so, and recorded for the next time
    ctx.postgres.psql().query(f"DROP TABLE {keyguard.TABLE}")
    note = _check_key_table(ctx, load_settings(ctx.project_dir))
    assert note.startswith("LANGFUSE_ENCRYPTION_KEY, LITELLM_SALT_KEY, N8N_ENCRYPTION_KEY: the backup recorded no fingerprint")
    assert _check_key_table(ctx, load_settings(ctx.project_dir)) == ""


def test_slice_10_drills_an_encrypted_backup_with_the_identity_given_at_run_time(
    new_context: Callable[..., BackupContext], age_keys: tuple[str, Path, Path], project: Path
) -> None:
    from ops.slices import run_verify as verify_slice
    from ops.slices import slice_10
    from ops.slices.base import Target

    recipient, identity, _ = age_keys
    ctx = new_context(OPS_BACKUP_AGE_RECIPIENTS=recipient)  # the VM's vps.env: the recipients only
    with (project / "vps.env").open("a") as env:
        cron = project / "cron.d" / "aistack-backups"
        env.write(f"OPS_BACKUP_CRON_FILE={cron}\nOPS_BACKUP_LOCK={project / 'lock'}\nOPS_BACKUP_LOG={project / 'log'}\n")
    (project / ".venv").symlink_to(REPO / ".venv")  # the job runs "$OPS_PROJECT_DIR/.venv/bin/ops"
    settings = load_settings(project)
    assert slice_10.install(settings) == [f"installed {cron}"]
    assert "backup drill >>" not in cron.read_text()  # the crontab cannot drill: the identity is not on the VM
    target = Target("http://127.0.0.1:9", "sk-x", "http://127.0.0.1:9", "pk", "sk", settings=settings)

    without = verify_slice(10, target)

    assert not without.ok and "give its age identity at run time with --identity FILE" in without.checks[-1].detail
    given = dataclasses.replace(settings, env={**settings.env, "OPS_BACKUP_AGE_IDENTITY": str(identity)})  # as --identity
    with_key = verify_slice(10, dataclasses.replace(target, settings=given))
    assert with_key.ok, with_key.to_dict()
    assert [c.name for c in with_key.checks][-1] == "restore test succeeds"
    drill = subprocess.run(
        [*OPS, "backup", "drill", "--identity", "-", "--json", "--project-dir", str(project)],
        input=identity.read_text(), capture_output=True, text=True,
    )  # fmt: skip
    assert drill.returncode == 0 and json.loads(drill.stdout)["ok"], drill.stdout + drill.stderr
    assert catalog.load(ctx).encrypted


CHILD = """
import io, sys
from ops.backup.identity import identity_file
with identity_file("-", io.BytesIO(b"AGE-SECRET-KEY-1QQQ\\n")) as path:
    print(path, flush=True)
    sys.stdin.read()  # blocks: the command is running
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_the_identity_copy_is_removed_when_the_command_is_stopped_by_a_signal(signum: int) -> None:
    # SIGTERM: a timeout or a shutdown; SIGHUP: the ssh connection carrying `--identity - < key` dropped
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        path = Path(child.stdout.readline().strip())
        assert path.is_file()
        child.send_signal(signum)
        assert child.wait(timeout=30) != 0
    finally:
        child.kill()
        child.wait()
    assert not path.exists(), f"the identity stayed on the host in {path}"


def _feed_tar(members: Mapping[str, bytes | Path]) -> Callable[[Command], None]:
    """Return a feed streaming a tar of members (name: bytes, or a Path: a symlink to it) into a command, as a
    restore's feeder does."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, Path):
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tar.addfile(info)
                continue
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    def feed(command: Command) -> None:
        subprocess.run(command.argv, input=buffer.getvalue(), check=True)

    return feed


@pytest.mark.parametrize("into", ["live", "scratch"])
def test_a_state_tar_writes_nothing_outside_ops(tmp_path: Path, into: str) -> None:
    # an object planted in the bucket (age encrypts to a public key: anyone with write access can make one)
    ctx = cast(BackupContext, SimpleNamespace(project_dir=tmp_path))
    entry = Entry("state", state.OBJECT, "b/20261124T020000Z-daily/state/ops.tar.zst", 1, "0" * 64, 0.1)
    members = {"./.ops/changes/cr-7.json": b"{}", "./vps.env": b"N8N_ENCRYPTION_KEY=planted", "./ops/evil.py": b""}

    state.restore(ctx, entry, into, _feed_tar(members))

    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    where = "" if into == "live" else ".ops/restore/state-20261124T020000Z-daily/"
    assert written == [f"{where}.ops/changes/cr-7.json"]


@pytest.mark.parametrize("into", ["live", "scratch"])
def test_symlinks_in_a_state_tar_lead_nowhere(tmp_path: Path, into: str) -> None:
    # ./.ops -> . would put the next members in the project; ./.ops/deployed -> elsewhere, ops deploy's writes there
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    ctx = cast(BackupContext, SimpleNamespace(project_dir=project))
    entry = Entry("state", state.OBJECT, "b/20261124T020000Z-daily/state/ops.tar.zst", 1, "0" * 64, 0.1)
    members: dict[str, bytes | Path] = {
        "./.ops": Path("."),
        "./.ops/compose.override.yaml": b"services: {}",
        "./.ops/deployed": outside,
        "./.ops/changes/cr-7.json": b"{}",
    }

    note = state.restore(ctx, entry, into, _feed_tar(members))

    root = project / ".ops" if into == "live" else project / ".ops/restore/state-20261124T020000Z-daily/.ops"
    assert not (project / "compose.override.yaml").exists() and list(outside.iterdir()) == []
    assert [p for p in project.rglob("*") if p.is_symlink()] == [] and (root / "changes/cr-7.json").is_file()
    assert "removed 1 symlink(s) the archive held: deployed" in note
