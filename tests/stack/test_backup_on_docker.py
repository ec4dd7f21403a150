"""Backups of the stack on a real Docker engine: pg_dump in the postgres container, volumes through a helper container."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ops.local.processes import GcsEmulatorServer
from tests.conftest import REPO
from tests.stack.conftest import StackProject

pytestmark = pytest.mark.stack
OPS = (sys.executable, "-m", "ops.cli")


def docker(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True, check=True).stdout.strip()


def test_stack_backup_drill_and_volume_restore(
    stack_project: StackProject, gcs: GcsEmulatorServer, images: dict[str, str]
) -> None:
    project = stack_project
    volume = f"{project.name}_n8n-data"
    docker("volume", "create", "--label", f"com.docker.compose.project={project.name}", volume)
    try:
        helper = images["postgres"]
        docker("run", "--rm", "-v", f"{volume}:/v", "--entrypoint", "sh", helper, "-c",
               "mkdir -p /v/.n8n && echo key-123 > /v/.n8n/config && chown -R 1000:1000 /v/.n8n")  # fmt: skip
        with (project.dir / "vps.env").open("a") as env:
            env.write(
                f"OPS_BACKUP_BUCKET={gcs.bucket}\nOPS_BACKUP_GCS_ENDPOINT={gcs.url}\nOPS_BACKUP_PREFIX={project.name}\n"
                f"OPS_BACKUP_HELPER_IMAGE={helper}\n"
            )
        seed = "CREATE TABLE workflows (id int, name text); INSERT INTO workflows SELECT g, 'w' FROM generate_series(1, 50) g"
        project.compose("exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "postgres", "-c", seed)
        base = [*OPS, "backup"]
        where = ["--project-dir", str(project.dir)]
        run = subprocess.run([*base, "run", "--source", "postgres", "--source", "volumes", "--json", *where],
                             capture_output=True, text=True)  # fmt: skip
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
        names = {o["name"] for o in report["objects"]}
        assert {"roles.sql", "postgres.dump", f"{volume}.tar"} <= names
        assert not any("postgres-data" in n for n in names)  # covered by pg_dump, excluded from the tar

        drill = subprocess.run([*base, "drill", "--json", *where], capture_output=True, text=True)
        assert drill.returncode == 0, drill.stdout + drill.stderr
        assert any(t["table"] == "public.workflows" and t["expected"][0] == "50" for t in json.loads(drill.stdout)["tables"])

        restore = subprocess.run([*base, "restore", report["id"], "--source", "volumes", *where], capture_output=True, text=True)
        assert restore.returncode == 0, restore.stderr
        restored = docker("run", "--rm", "-v", f"{volume}-restored:/v", "--entrypoint", "sh", helper, "-c",
                          "cat /v/.n8n/config; stat -c %u /v/.n8n/config")  # fmt: skip
        assert restored.split() == ["key-123", "1000"]
    finally:
        subprocess.run(["docker", "volume", "rm", "-f", volume, f"{volume}-restored"], capture_output=True)


def test_slice_10_installs_the_jobs_and_verifies_a_backup_and_a_drill_on_the_stack(
    stack_project: StackProject, gcs: GcsEmulatorServer, images: dict[str, str]
) -> None:
    from ops.slices import engine

    project = stack_project
    truth = project.dir / "truth"
    subprocess.run(["git", "init", "-q", "-b", "main", str(truth)], check=True)
    subprocess.run(["git", "-C", str(truth), "-c", "user.name=h", "-c", "user.email=h@example.com", "commit", "-q",
                    "--allow-empty", "-m", "start"], check=True)  # fmt: skip
    cron = project.dir / "cron.d" / "aistack-backups"
    with (project.dir / "vps.env").open("a") as env:
        env.write(
            f"OPS_BACKUP_BUCKET={gcs.bucket}\nOPS_BACKUP_GCS_ENDPOINT={gcs.url}\nOPS_BACKUP_PREFIX={project.name}\n"
            f"OPS_BACKUP_CRON_FILE={cron}\nOPS_BACKUP_LOCK={project.dir / 'backup.lock'}\n"
            f"OPS_BACKUP_LOG={project.dir / 'backup.log'}\n"
        )
    (project.dir / ".venv").symlink_to(REPO / ".venv")  # the job runs "$OPS_PROJECT_DIR/.venv/bin/ops", as cron does
    project.compose("up", "--detach", "--wait", "--wait-timeout", "120", "qdrant")  # the snapshot API's stand-in

    applied = engine.run_apply(engine.Runtime.for_settings(project.settings), 10)

    assert applied.outcome == "ok", [c.to_dict() for c in applied.checks]
    checks = ["jobs installed", "backup runs as cron runs it", "files appear in GCS", "restore test succeeds"]
    assert [c.name for c in applied.checks] == checks
    assert f"installed {cron}" in applied.changed
    assert "30 3  *   *   0   root flock" in cron.read_text()
    assert "backup drill >>" not in cron.read_text()  # it decrypts: the identity stays off the VM
    listed = subprocess.run([*OPS, "backup", "list", "--json", "--project-dir", str(project.dir)], capture_output=True, text=True)
    sources = json.loads(listed.stdout)["backups"][-1]["sources"]
    assert sources == ["git", "postgres", "qdrant", "state"]  # .ops/ (the slice's snapshot); vps.env only when encrypted


def test_a_live_volume_restore_replaces_the_files_and_a_volume_it_creates_is_backed_up_later(
    stack_project: StackProject, gcs: GcsEmulatorServer, images: dict[str, str]
) -> None:
    project = stack_project
    volume, helper = f"{project.name}_n8n-data", images["postgres"]
    base, where = [*OPS, "backup"], ["--project-dir", str(project.dir)]

    def ops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args, *where], capture_output=True, text=True)

    def files() -> str:
        return docker("run", "--rm", "-v", f"{volume}:/v", "--entrypoint", "sh", helper, "-c",
                      "cd /v && for f in $(ls -A | sort); do echo \"$f=$(cat $f)\"; done")  # fmt: skip

    docker("volume", "create", "--label", f"com.docker.compose.project={project.name}",
           "--label", "com.docker.compose.volume=n8n-data", volume)  # fmt: skip
    try:
        docker("run", "--rm", "-v", f"{volume}:/v", "--entrypoint", "sh", helper, "-c", "echo 1 > /v/a; echo 2 > /v/b")
        with (project.dir / "vps.env").open("a") as env:
            env.write(
                f"OPS_BACKUP_BUCKET={gcs.bucket}\nOPS_BACKUP_GCS_ENDPOINT={gcs.url}\nOPS_BACKUP_PREFIX={project.name}-v\n"
                f"OPS_BACKUP_HELPER_IMAGE={helper}\n"
            )
        weekly = ops("run", "--schedule", "weekly", "--json")
        assert weekly.returncode == 0, weekly.stderr
        backup_id = json.loads(weekly.stdout)["id"]
        docker("run", "--rm", "-v", f"{volume}:/v", "--entrypoint", "sh", helper, "-c", "echo changed > /v/a; echo 3 > /v/c")

        restored = ops("restore", backup_id, "--source", "volumes", "--into", "live", "--yes")

        assert restored.returncode == 0, restored.stderr
        assert files().split() == ["a=1", "b=2"]  # replaced: c, written after the backup, is gone
        assert "safety backup of the replaced data" in restored.stdout

        # before the stack exists: the volume is created with compose's labels, so backups keep finding it
        docker("volume", "rm", volume)
        assert ops("restore", backup_id, "--source", "volumes", "--into", "live", "--yes").returncode == 0
        labels = json.loads(docker("volume", "inspect", "--format", "{{json .Labels}}", volume))
        assert labels["com.docker.compose.project"] == project.name and labels["com.docker.compose.volume"] == "n8n-data"
        assert files().split() == ["a=1", "b=2"]
        again = ops("run", "--schedule", "weekly", "--json")
        assert again.returncode == 0, again.stderr
        assert [o["name"] for o in json.loads(again.stdout)["objects"]] == [f"{volume}.tar"]

        # a weekly run that no longer finds a volume the previous one had fails, naming it
        docker("volume", "rm", volume)
        lost = ops("run", "--schedule", "weekly")
        assert lost.returncode == 2 and f"lost since the previous weekly run: volumes/{volume}.tar" in lost.stderr
    finally:
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)
