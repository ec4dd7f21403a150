"""The pre-upgrade copy of a service's data, on the VM's disk under .ops/upgrades/, and its restore.

Local, beside the off-VM backup (`ops backup run` when OPS_BACKUP_BUCKET is set): a rollback must
not need the network, nor the backup's age identity, which stays off the VM (docs/BACKUPS.md).
Databases are pg_dump archives, taken with the service stopped, with each table's row count and
checksum (ops.backup.sources.postgres.fingerprints) recorded beside them. A restore drops the
database and recreates it from the archive (pg_restore --create: its owner, privileges and
settings as dumped), so the tables and columns a failed migration added go too, and then the
fingerprints must match again. Volumes are tar archives made by a throwaway container (the
service stopped), restored by emptying the volume and unpacking the archive.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ops.backup.context import PostgresAccess
from ops.backup.pipeline import Command, stream
from ops.backup.sources.postgres import fingerprints
from ops.errors import ServiceError
from ops.interrupts import in_shield
from ops.runtime.compose import Compose
from ops.slices.engine import _private_dir, _private_text

OPS_SCHEMA = "ops."  # the journal and the lock: they change while the upgrade runs, and are never restored
EMPTY_AND_UNPACK = "find /volume -mindepth 1 -delete && exec tar -C /volume --numeric-owner -xpf -"


@dataclass(frozen=True)
class DockerCli:
    """The docker CLI for the stack's engine (DOCKER_HOST as compose has it)."""

    env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def for_compose(cls, compose: Compose) -> DockerCli:
        return cls((("DOCKER_HOST", compose.docker_host),) if compose.docker_host else ())

    def command(self, *args: str) -> Command:
        return Command(("docker", *args), self.env)

    def run(self, *args: str, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None, timeout: float = 600) -> str:
        """Run `docker ARGS`; return its output (unless stdout is given). Raise ServiceError naming the command."""
        try:
            proc = subprocess.run(
                ["docker", *args],
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=stdout if stdout is not None else subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, **dict(self.env)},
                timeout=timeout,
                start_new_session=in_shield(),  # a rollback's docker run finishes through a Ctrl-C
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceError(f"docker {' '.join(args[:2])} failed: {exc}") from exc
        if proc.returncode != 0:
            raise ServiceError(f"docker {' '.join(args[:2])} failed: {proc.stderr.decode(errors='replace').strip()[-600:]}")
        return proc.stdout.decode(errors="replace") if stdout is None else ""

    def ok(self, *args: str) -> bool:
        """Return whether `docker ARGS` succeeds (an inspect of something that may not exist)."""
        try:
            self.run(*args, timeout=120)
        except ServiceError:
            return False
        return True


def helper(docker: DockerCli, image: str, volume: str, mode: str, entrypoint: str, *args: str) -> tuple[str, ...]:
    """Return docker arguments of a throwaway container of image (any with sh and tar) with volume at /volume."""
    return ("run", "--rm", "-i", "--network", "none", "-v", f"{volume}:/volume{mode}", "--entrypoint", entrypoint, image, *args)


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            yield chunk


def _write_private(path: Path, producer: Command) -> str:
    """Write what producer prints to path (mode 600), flushed to disk; return its sha256."""
    _private_dir(path.parent)
    with open(path, "wb", opener=lambda p, flags: os.open(p, flags, 0o600)) as out:

        def sink(chunk: bytes) -> None:
            out.write(chunk)

        digest = stream(producer, [], sink).sha256
        out.flush()
        os.fsync(out.fileno())
    return digest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for chunk in _chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def comparable(tables: dict[str, list[str]]) -> dict[str, list[str]]:
    """Given a database's fingerprints, return those a restore must give back (ops's own journal and lock left out)."""
    return {name: value for name, value in tables.items() if not name.startswith(OPS_SCHEMA)}


def differences(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[str]:
    """Given two fingerprints of one database, return each table that differs, as 'table (what)'; [] if equal."""
    before, after = comparable(before), comparable(after)
    out = [f"{t} (missing)" for t in sorted(before.keys() - after.keys())]
    out += [f"{t} (added)" for t in sorted(after.keys() - before.keys())]
    out += [
        f"{t} ({before[t][0]} rows before, {after[t][0]} after)"
        for t in sorted(before.keys() & after.keys())
        if before[t] != after[t]
    ]
    return out


@dataclass
class LocalCopy:
    """The copy taken before an upgrade: each database's archive and fingerprints, each volume's archive."""

    directory: Path
    databases: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    volumes: dict[str, str] = field(default_factory=dict)  # compose volume -> Docker volume
    digests: dict[str, str] = field(default_factory=dict)  # archive path in the directory -> sha256 when written

    def save(self) -> None:
        state = {"databases": self.databases, "volumes": self.volumes, "sha256": self.digests}
        _private_text(self.directory / "copy.json", json.dumps(state, indent=2))

    def archives(self) -> list[str]:
        """Return the path (in the directory) of each archive a restore reads."""
        return [f"databases/{d}.dump" for d in self.databases] + [f"volumes/{v}.tar" for v in self.volumes]

    def check(self) -> None:
        """Raise ServiceError naming each archive that is missing or differs from what was written.

        A rollback calls it before it drops or empties anything: a copy removed or damaged while the
        new version ran must not cost the data it replaces too.
        """
        bad = []
        for name in self.archives():
            path = self.directory / name
            if not path.is_file():
                bad.append(f"{name} (missing)")
            elif self.digests.get(name) and _sha256(path) != self.digests[name]:
                bad.append(f"{name} (changed since it was written)")
        if bad:
            raise ServiceError(
                f"the copy in {self.directory} cannot be restored: {', '.join(bad)}; nothing was dropped or emptied"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "databases": sorted(self.databases), "volumes": sorted(self.volumes)}


def take_copy(
    directory: Path, access: PostgresAccess, docker: DockerCli, helper_image: str, databases: list[str], volumes: dict[str, str]
) -> LocalCopy:
    """Given the copy's directory, how to reach Postgres and Docker, and what to copy, write the copy; return it.

    The services using the data must be stopped. Raise OpsError (ServiceError, PipelineError) if a dump or
    an archive fails; what was written stays in the directory (it is only ever read after copy.json is written).
    """
    copy = LocalCopy(directory, volumes=dict(volumes))
    _private_dir(directory)
    for database in databases:
        copy.databases[database] = fingerprints(access, database)
        dump = access.command("pg_dump", "-Fc", "-d", database)
        copy.digests[f"databases/{database}.dump"] = _write_private(directory / "databases" / f"{database}.dump", dump)
    for name, volume in volumes.items():
        tar = helper(docker, helper_image, volume, ":ro", "tar", "-C", "/volume", "--numeric-owner", "-cf", "-", ".")
        copy.digests[f"volumes/{name}.tar"] = _write_private(directory / "volumes" / f"{name}.tar", docker.command(*tar))
    copy.save()
    return copy


def restore_database(access: PostgresAccess, database: str, archive: Path) -> None:
    """Given a database and its pg_dump archive, replace the database with the archive's (dropped, recreated).

    Raise OpsError if a step fails.
    """
    access.psql().query('DROP DATABASE IF EXISTS :"d" WITH (FORCE)', d=database)
    stream(lambda: _chunks(archive), [access.command("pg_restore", "--create", "--exit-on-error", "-d", "postgres")])


def restore_volume(docker: DockerCli, helper_image: str, volume: str, archive: Path) -> None:
    """Given a Docker volume and its archive, replace its files with the archive's.

    Raise ServiceError, with the volume untouched, if a running container uses it.
    """
    users = docker.run("ps", "-q", "--filter", f"volume={volume}", timeout=120).split()
    if users:
        raise ServiceError(f"volume {volume} is in use by running container(s) {', '.join(users)}: not emptied")
    unpack = helper(docker, helper_image, volume, "", "sh", "-c", EMPTY_AND_UNPACK)
    stream(lambda: _chunks(archive), [docker.command(*unpack)])


def restore_copy(copy: LocalCopy, access: PostgresAccess, docker: DockerCli, helper_image: str) -> list[str]:
    """Given a copy, put its databases and volumes back and check each database's fingerprints; return the steps done.

    Raise ServiceError naming the tables that differ from the copy after the restore, OpsError if a step fails.
    """
    copy.check()
    steps = []
    for database, tables in copy.databases.items():
        restore_database(access, database, copy.directory / "databases" / f"{database}.dump")
        changed = differences(tables, fingerprints(access, database))
        if changed:
            raise ServiceError(f"database {database} restored but differs from its copy: {', '.join(changed)}")
        steps.append(f"restored database {database} ({len(tables)} tables, each equal to the copy)")
    for name, volume in copy.volumes.items():
        restore_volume(docker, helper_image, volume, copy.directory / "volumes" / f"{name}.tar")
        steps.append(f"restored volume {volume}")
    return steps
