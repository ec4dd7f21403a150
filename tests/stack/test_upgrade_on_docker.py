"""`ops upgrade` on a real engine: a bad new version rolled back with the data as before, and Postgres 15 -> 18.

1. n8n: the old version is a stand-in answering n8n's readiness probe; the "new version" (built FROM the
   postgres stand-in, so it has psql) migrates the n8n database forward (a column, a table, the version row)
   and its volume, then never answers. `ops upgrade n8n --to 2.41.0` must roll back: the database dumps
   equal, the volume's file as it was, the old image serving, the journal saying rolled-back.
2. Postgres: a real PostgreSQL 15 (Debian bookworm's, in an image made the official image's way:
   tests/stack/images.py POSTGRES15) holds data, as the stack ran before 18; the compose file then says 18
   (git pull) while the old container still runs. `ops upgrade postgres --to 18.6-trixie` moves the cluster by
   dump and restore; every table, role and owner is the same after, a role's password still logs in, and the
   old cluster stays in a volume of its own.

The images are tagged with release-like tags under aistack-test/ (a version must be readable from the tag);
nothing is pulled.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.envfile import read_env_file
from ops.health import run_health
from ops.local.processes import free_port
from ops.upgrade import run_upgrade
from tests.stack.conftest import IMAGE_CACHE, StackProject, new_stack_project
from tests.stack.images import POSTGRES15, build

pytestmark = pytest.mark.stack

PG18 = "aistack-test/postgres:18.6-trixie"
PG15 = "aistack-test/postgres:15.14-bookworm"
PG18_BROKEN = "aistack-test/postgres:18.7-trixie"  # a release that never starts
N8N_OLD = "aistack-test/n8n:2.40.7"
N8N_NEW = "aistack-test/n8n:2.41.0"

FAKE_N8N = """# n8n 2.40.7's readiness answer (source: n8n dist/abstract-server.js, setupHealthCheck): 200 {"status": "ok"}
import http.server, json, signal, sys

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # as n8n does: `docker stop` ends it at once

class Health(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):  # the compose file's healthcheck: wget --spider sends HEAD
        self.body = json.dumps({"status": "ok"}).encode()
        self.send_response(200 if self.path.startswith("/healthz") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()

    def do_GET(self):
        self.do_HEAD()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("0.0.0.0", 5678), Health).serve_forever()
"""

# "n8n 2.41.0": migrates the database and the volume forward, says so in the witness directory, never answers
MIGRATE = """#!/bin/bash
set -euo pipefail
export PGPASSWORD="$DB_POSTGRESDB_PASSWORD"
psql -X -q -v ON_ERROR_STOP=1 -h "$DB_POSTGRESDB_HOST" -U "$DB_POSTGRESDB_USER" -d "$DB_POSTGRESDB_DATABASE" <<'SQL'
ALTER TABLE workflow_entity ADD COLUMN IF NOT EXISTS pinned boolean DEFAULT true;
CREATE TABLE IF NOT EXISTS insights (id int PRIMARY KEY);
UPDATE migrations SET version = 2;
SQL
echo "config of 2.41.0" > /home/node/.n8n/config
echo "migrated to $(psql -X -A -t -h "$DB_POSTGRESDB_HOST" -U "$DB_POSTGRESDB_USER" -d "$DB_POSTGRESDB_DATABASE" \\
  -c 'SELECT version FROM migrations')" > /witness/migrated
trap 'exit 0' TERM  # as n8n does: `docker stop` ends it at once
sleep infinity &
wait
"""

N8N_OVERRIDE = """services:
  n8n:
    image: {image}
    ports:
      - "127.0.0.1:{port}:5678"
    volumes:
      - {witness}:/witness
    healthcheck:
      interval: 2s
"""

PG15_OVERRIDE = f"""# the stack before it moved to 18: the 15 image, the volume at its PGDATA
services:
  postgres:
    image: {PG15}
    volumes: !override
      - postgres-data:/var/lib/postgresql/data
  postgres-init:
    image: {PG15}
"""


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=600).stdout


def _docker_build(tag: str, base: str, name: str, content: str, entrypoint: str, where: Path) -> None:
    context = where / tag.replace("/", "_").replace(":", "_")
    context.mkdir()
    (context / name).write_text(content)
    (context / name).chmod(0o755)
    (context / "Dockerfile").write_text(f"FROM {base}\nCOPY {name} /{name}\nENTRYPOINT {entrypoint}\n")
    docker("build", "-q", "-t", tag, str(context))


@pytest.fixture(scope="module")
def upgrade_images(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The stand-ins under release-like tags: Postgres 18 and 15, n8n's old version and its bad new one."""
    docker("tag", images["postgres"], PG18)
    docker("tag", build(POSTGRES15, IMAGE_CACHE), PG15)
    where = tmp_path_factory.mktemp("builds")
    _docker_build(N8N_OLD, images["python"], "fake_n8n.py", FAKE_N8N, '["python3", "/fake_n8n.py"]', where)
    _docker_build(N8N_NEW, images["postgres"], "migrate.sh", MIGRATE, '["/migrate.sh"]', where)
    _docker_build(PG18_BROKEN, images["postgres"], "broken.sh", "#!/bin/sh\nexit 1\n", '["/broken.sh"]', where)
    return {**images, "postgres": PG18}


def _set_env(project: StackProject, **values: str) -> None:
    path = project.dir / "vps.env"
    text = path.read_text()
    for key, value in values.items():
        text = (
            re.sub(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
            if re.search(rf"^{key}=", text, re.M)
            else (text + f"\n{key}={value}\n")
        )
    path.write_text(text)


def _use_overrides(project: StackProject, *names: str) -> None:
    project.overrides = ("compose.standin.yml", *names)
    _set_env(project, OPS_COMPOSE_OVERRIDES=",".join(project.overrides))


def psql(project: StackProject, database: str, sql: str, user: str = "postgres") -> str:
    argv = ("psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", database, "-c", sql)
    return project.compose("exec", "-T", "postgres", *argv).stdout


def dump(project: StackProject, database: str) -> str:
    """pg_dump's whole text of database, without its random \\restrict key lines."""
    text = project.compose("exec", "-T", "postgres", "pg_dump", "-U", "postgres", "-d", database).stdout
    return "\n".join(line for line in text.splitlines() if not re.match(r"^\\(un)?restrict ", line))


@pytest.fixture
def n8n_project(upgrade_images: dict[str, str], tmp_path: Path) -> Iterator[StackProject]:
    for project in new_stack_project(upgrade_images, tmp_path, start=("postgres",)):
        port = free_port()
        witness = tmp_path / "witness"
        witness.mkdir()
        (project.dir / "compose.upgrade.yml").write_text(N8N_OVERRIDE.format(image=N8N_OLD, port=port, witness=witness))
        _use_overrides(project, "compose.upgrade.yml")
        _set_env(project, OPS_N8N_URL=f"http://127.0.0.1:{port}")
        project.compose("up", "--detach", "--wait", "--wait-timeout", "120", "n8n")
        yield project


def test_a_bad_n8n_version_is_rolled_back_with_the_data_as_before(n8n_project: StackProject) -> None:
    project = n8n_project
    psql(
        project,
        "n8n",
        "CREATE TABLE workflow_entity (id int PRIMARY KEY, name text NOT NULL, nodes jsonb);"
        "INSERT INTO workflow_entity SELECT g, 'workflow ' || g, jsonb_build_object('n', g) FROM generate_series(1, 200) g;"
        "CREATE TABLE migrations (version int NOT NULL); INSERT INTO migrations VALUES (1);",
        user="n8n",
    )
    project.compose("exec", "-T", "n8n", "sh", "-c", "echo 'config of 2.40.7' > /home/node/.n8n/config")
    before = dump(project, "n8n")

    report = run_upgrade(project.settings, "n8n", "2.41.0", timeout=10)

    print(f"\nrollback of n8n 2.40.7 -> 2.41.0 took {report.rollback_seconds} s")  # docs/UPGRADES.md quotes it
    assert report.outcome == "rolled-back", report
    assert "the health gate (n8n) failed" in report.error
    assert (project.dir.parent / "witness" / "migrated").read_text().strip() == "migrated to 2"  # it did migrate
    assert dump(project, "n8n") == before
    config = project.compose("exec", "-T", "n8n", "cat", "/home/node/.n8n/config").stdout
    assert config.strip() == "config of 2.40.7"
    container = project.compose("ps", "-q", "n8n").stdout.strip()
    assert docker("inspect", "--format", "{{.Config.Image}}", container).strip() == N8N_OLD
    assert run_health(project.settings, only=("n8n",)).ok
    assert f"image: {N8N_OLD}" in (project.dir / "compose.upgrade.yml").read_text()
    assert psql(project, "postgres", "SELECT action, outcome FROM ops.journal ORDER BY id DESC LIMIT 1").strip() == (
        "upgrade|rolled-back"
    )
    assert psql(project, "postgres", "SELECT count(*) FROM ops.lock").strip() == "0"


CONTENTS = {
    "n8n": "SELECT id, name, created, tags FROM workflow_entity ORDER BY id",
    "litellm": 'SELECT request_id, spend, metadata FROM "LiteLLM_SpendLogs" ORDER BY request_id',
    "postgres": "SELECT rolname, rolsuper, rolcanlogin FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1",
    "template1": "SELECT datname, pg_get_userbyid(datdba), encoding FROM pg_database ORDER BY 1",
}


def _contents(project: StackProject) -> dict[str, str]:
    found = {db: psql(project, db, sql) for db, sql in CONTENTS.items()}
    found["owners"] = psql(project, "n8n", "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
    return found


def _seed(project: StackProject) -> dict[str, str]:
    """Tables in two databases, owned by their apps' roles; return what _contents reads."""
    psql(
        project,
        "n8n",
        "CREATE TABLE workflow_entity (id serial PRIMARY KEY, name text, created timestamptz DEFAULT now(), tags text[]);"
        "INSERT INTO workflow_entity (name, tags) SELECT 'flux ✓ ' || g, ARRAY['a', g::text] FROM generate_series(1, 500) g;",
        user="n8n",
    )
    psql(
        project,
        "litellm",
        'CREATE TABLE "LiteLLM_SpendLogs" (request_id text PRIMARY KEY, spend double precision, metadata jsonb);'
        """INSERT INTO "LiteLLM_SpendLogs" SELECT 'req-' || g, g / 7.0, '{"team": "a"}' FROM generate_series(1, 300) g;""",
        user="litellm",
    )
    return _contents(project)


@pytest.fixture
def pg15_project(upgrade_images: dict[str, str], tmp_path: Path) -> Iterator[StackProject]:
    for project in new_stack_project(upgrade_images, tmp_path, start=()):
        (project.dir / "compose.pg15.yml").write_text(PG15_OVERRIDE)
        _use_overrides(project, "compose.pg15.yml")
        project.compose("up", "--detach", "--wait", "--wait-timeout", "120", "postgres")
        project.compose("up", "postgres-init")  # attached: returns once the databases and roles exist
        try:
            yield project
        finally:
            for volume in docker("volume", "ls", "-q", "--filter", f"name={project.name}_postgres-data-pg15").split():
                subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)


def test_postgres_15_moves_to_18_with_every_table_role_and_owner(pg15_project: StackProject) -> None:
    project = pg15_project
    assert psql(project, "postgres", "SHOW server_version_num").startswith("15")
    before = _seed(project)
    _use_overrides(project)  # git pull: the compose file says 18 now; the 15 container still runs

    started = time.monotonic()
    report = run_upgrade(project.settings, "postgres", "18.6-trixie", timeout=60)
    print(f"\npostgres 15 -> 18 by dump and restore took {time.monotonic() - started:.1f} s")  # docs/UPGRADES.md quotes it

    assert report.outcome == "ok", report
    assert report.path == "postgres major (dump and restore)" and report.current == "15"
    assert psql(project, "postgres", "SHOW server_version_num").startswith("18")
    container = project.compose("ps", "-q", "postgres").stdout.strip()
    assert docker("inspect", "--format", "{{.Config.Image}}", container).strip() == PG18
    assert _contents(project) == before
    password = read_env_file(project.dir / "vps.env")["N8N_DB_PASSWORD"]
    login = project.compose(
        "exec", "-T", "-e", f"PGPASSWORD={password}", "postgres",
        "psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-U", "n8n", "-d", "n8n", "-c", "SELECT count(*) FROM workflow_entity",
    )  # fmt: skip
    assert login.stdout.strip() == "500"  # the role's password hash came over: the app logs in as before
    assert report.kept_volume.startswith(f"{project.name}_postgres-data-pg15-")
    kept = json.loads(docker("volume", "inspect", report.kept_volume))
    assert kept and "com.docker.compose.project" not in (kept[0].get("Labels") or {})  # compose and backups leave it be
    assert psql(project, "postgres", "SELECT action, outcome FROM ops.journal ORDER BY id DESC LIMIT 1").strip() == "upgrade|ok"


def test_a_failed_move_to_18_puts_the_15_cluster_and_its_container_back(pg15_project: StackProject) -> None:
    project = pg15_project
    before = _seed(project)
    _use_overrides(project)  # git pull: the compose file says 18 now; the 15 container still runs
    override = (project.dir / "compose.standin.yml").read_text()

    report = run_upgrade(project.settings, "postgres", "18.7-trixie", timeout=30)

    print(f"\nrollback of postgres 15 -> 18 took {report.rollback_seconds} s")
    assert report.outcome == "rolled-back", report
    assert "docker compose up postgres" in report.error
    assert (project.dir / "compose.standin.yml").read_text() == override  # the 18.6 line as it was
    container = project.compose("ps", "-q", "postgres").stdout.strip()  # the old container, made again
    assert docker("inspect", "--format", "{{.Config.Image}}", container).strip() == PG15
    assert psql(project, "postgres", "SHOW server_version_num").startswith("15")
    assert _contents(project) == before
    assert psql(project, "postgres", "SELECT action, outcome FROM ops.journal ORDER BY id DESC LIMIT 1").strip() == (
        "upgrade|rolled-back"
    )
    assert psql(project, "postgres", "SELECT count(*) FROM ops.lock").strip() == "0"
