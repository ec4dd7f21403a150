"""Backups of the stack on a real Docker engine: pg_dump in the postgres container, volumes through a helper container."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ops.local.processes import GcsEmulatorServer
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
