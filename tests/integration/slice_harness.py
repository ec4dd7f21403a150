"""A slice the engine applies, verifies and rolls back for real without Docker.

It touches one file (app.conf) and one database on the tests' Postgres: its
install step copies the file out of the project (as slice 10 installs its
crontab), its verify passes when the text starts with "good", and the
database holds data the test writes (as a service's users would).
The engine's pg_dump and pg_restore run from ``bin_dir``: links to the real
programs, where a test can make pg_restore wait at a gate so that a signal
arrives mid-rollback. The journal lives in its own database.

Run as a module it is the operator in a child process:
``python -m tests.integration.slice_harness apply|rollback BENCH_JSON [USER]``;
it exits with the engine's signal code when interrupted and 2 on an OpsError.
Started as root with USER, it drops to that user once everything is imported
(this machine's interpreter lives where only root can read).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pwd
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ops import tools
from ops.backup.context import PostgresAccess
from ops.config import Settings, load_settings
from ops.errors import OpsError
from ops.interrupts import Interrupted
from ops.journal import Psql
from ops.runtime.compose import Compose
from ops.slices import engine
from ops.slices.base import Check, Target

importlib.import_module("_strptime")  # datetime.strptime imports it lazily: unreadable once the child is another user

APP = "app.conf"
GATE_STARTED = "restore-started"  # pg_restore reached the gate
GATE_OPEN = "restore-go"  # the gate lets pg_restore run

GATED_PG_RESTORE = """#!/bin/sh
touch "{gate}/{started}"
while [ ! -e "{gate}/{open}" ]; do sleep 0.05; done
exec "{real}" "$@"
"""


@dataclass(frozen=True)
class Bench:
    project: str
    server_url: str  # postgresql://postgres:PW@127.0.0.1:PORT/postgres
    journal_url: str  # the journal's database on the same server
    database: str  # the slice's database
    bin_dir: str  # where the engine's pg_dump and pg_restore come from

    @property
    def settings(self) -> Settings:
        return load_settings(Path(self.project))

    def psql(self, url: str | None = None) -> Psql:
        return Psql((tools.postgres_bin("psql") or "psql", url or self.server_url.rsplit("/", 1)[0] + f"/{self.database}"))

    def value(self) -> str | None:
        """The data in the slice's database, or None if there is none."""
        if not self.psql().query("SELECT 1 FROM pg_tables WHERE tablename = 'data';"):
            return None
        rows = self.psql().query("SELECT value FROM data WHERE id = 1;")
        return rows[0][0] if rows else None

    def set_value(self, text: str) -> None:
        self.psql().query(
            "CREATE TABLE IF NOT EXISTS data (id int PRIMARY KEY, value text NOT NULL); "
            "INSERT INTO data VALUES (1, :'value') ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value;",
            value=text,
        )

    @property
    def installed(self) -> Path:
        """Where the install step puts the file: outside the project, as a crontab is."""
        return Path(self.project).parent / "installed.conf"

    def write(self, text: str) -> None:
        (Path(self.project) / APP).write_text(text + "\n")

    def read(self) -> str | None:
        path = Path(self.project) / APP
        return path.read_text().strip() if path.exists() else None


def make_bin_dir(directory: Path, gate: Path | None = None) -> Path:
    """Given a directory, fill it with pg_dump and pg_restore (pg_restore waiting at gate, if given); return it."""
    directory.mkdir(parents=True, exist_ok=True)
    for program in ("pg_dump", "pg_restore", "psql"):
        real = tools.postgres_bin(program) or program
        target = directory / program
        if program == "pg_restore" and gate is not None:
            target.write_text(GATED_PG_RESTORE.format(gate=gate, started=GATE_STARTED, open=GATE_OPEN, real=real))
            target.chmod(0o755)
        else:
            target.symlink_to(real)
    return directory


def make_slice(bench: Bench) -> ModuleType:
    """The slice under test, numbered 1 (it needs no other slice)."""
    module = ModuleType("slice_under_test")
    attributes = {
        "NUMBER": 1,
        "TITLE": "one file and one database",
        "REQUIRES": (),
        "SERVICES": (),
        "FILES": (APP,),
        "DATABASES": (bench.database,),
    }
    for name, value in attributes.items():
        setattr(module, name, value)

    def install(settings: Settings) -> list[str]:
        text = (settings.project_dir / APP).read_text()
        if bench.installed.exists() and bench.installed.read_text() == text:
            return []
        bench.installed.write_text(text)
        return [f"installed {APP}"]

    def verify(target: Target) -> list[Check]:
        assert target.settings is not None
        text = (target.settings.project_dir / APP).read_text().strip()
        return [Check(APP, text.startswith("good"), text)]

    setattr(module, "install", install)  # noqa: B010 - a module built at run time
    setattr(module, "verify", verify)  # noqa: B010
    return module


def runtime(bench: Bench) -> engine.Runtime:
    settings = bench.settings
    target = dataclasses.replace(Target("http://127.0.0.1:9", "sk-x", "http://127.0.0.1:9", "pk", "sk"), settings=settings)
    postgres = PostgresAccess.from_url(bench.server_url, bin_dir=bench.bin_dir)
    return engine.Runtime(settings, Compose.for_settings(settings), bench.psql(bench.journal_url), target, postgres)


def main(argv: list[str]) -> int:
    action, bench = argv[0], Bench(**json.loads(argv[1]))
    if len(argv) > 2:  # an operator without sudo, after a `sudo make slice-N`
        account = pwd.getpwnam(argv[2])
        os.setgroups([])
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
    slice_module = make_slice(bench)
    setattr(engine, "get_slice", lambda number: slice_module)  # noqa: B010 - the slice under test, not the plan's
    print(f"pid {os.getpid()}", flush=True)
    try:
        if action == "apply":
            print(json.dumps(engine.run_apply(runtime(bench), 1).to_dict()))
        else:
            print(json.dumps(engine.run_rollback(runtime(bench), 1).to_dict()))
    except Interrupted as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
