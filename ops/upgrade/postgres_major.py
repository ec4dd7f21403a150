"""Postgres to a new major (15 -> 18) by dump and restore, the old cluster kept in a volume of its own.

The state this starts from is the one `git pull` leaves: docker-compose.vps.yml describes the new
major (postgres:18.6-trixie, the volume at /var/lib/postgresql), while the postgres-data volume still
holds the 15 image's cluster at its root (ops.runtime.postgres_volume finds it, read-only), and the
container the old file made may still run. Steps, under the operator lock and journaled:

1. every service of the project stopped; the old cluster started in a throwaway container of the old
   image (the old container's, or --from-image), on no network, the volume where the 15 image had it;
   the lock and the journal row are taken there;
2. each table's row count and checksum (ops.backup.sources.postgres) and a pg_dumpall of the whole
   cluster (roles, every database, ops's own journal) written under .ops/upgrades/; the old server stopped;
3. the volume copied to ``<volume>-pg15-<time>`` (kept until the operator removes it), then emptied;
   the 18 image starts on it and initialises a new cluster; the dump is restored with psql;
4. every table compared with its fingerprint from step 2; the services that ran started again and
   `ops health` gated.

If step 3 or 4 fails, the new container goes, the volume gets the old cluster back from the copy,
the journal row is finished ``rolled-back`` in the old cluster, and the old container (when one
ran before) is created again from its saved configuration and started, with the services that ran.

Why not pg_upgrade: it needs the old and the new major's programs in one container (each official
image holds one major; the usual way is a third image such as tianon/postgres-upgrade, which this
project does not pin), and it keeps the old indexes as they are, built under bookworm's glibc
collation while the 18 image runs trixie's; a restore rebuilds every index under the new one. Its
speed (--link) matters for hundreds of GB, not for this stack's databases.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ops import tools
from ops.backup.context import PostgresAccess
from ops.backup.sources.postgres import databases, fingerprints
from ops.errors import ConfigError, OpsError, ServiceError
from ops.files import read_text
from ops.images import _replace_file
from ops.images.reference import parse_reference
from ops.interrupts import Interrupted, in_shield, shielded, signals_as_exceptions
from ops.journal import Journal, Lock, LockError, Psql, lock_holder
from ops.local.processes import wait_until
from ops.runtime import docker as docker_sdk
from ops.runtime.gate import wait_healthy
from ops.runtime.postgres_volume import MOUNT, RUNBOOK, old_clusters
from ops.slices.engine import _failure, _journaled, _private_dir, _private_text, _reason, _Row, require_writable_dirs
from ops.upgrade import Context, UpgradeReport
from ops.upgrade.app import checked_lines, ensure_image, finish_quietly, mark_quietly
from ops.upgrade.copy import DockerCli, _write_private, differences
from ops.upgrade.plan import (
    KINDS,
    ImageLine,
    UpgradeError,
    Version,
    current_version,
    new_reference,
    plan_hash,
    probes_for,
    require_unchanged,
    rewritten_files,
)
from ops.upgrade.plan import parse_version as version_of

OLD_PGDATA = (
    "/var/lib/postgresql/data"  # the 15 image's PGDATA and VOLUME (source: docker-library/postgres 15/bookworm/Dockerfile)
)
ALREADY_THERE = 'role "postgres" already exists'  # the new cluster's superuser: pg_dumpall's CREATE ROLE for it fails, harmlessly
READY_SECONDS = 120.0


@dataclass
class MajorPlan:
    volume: str  # the Docker volume (aistack_postgres-data)
    old_major: int
    old_image: str
    new_image: str
    lines: dict[str, ImageLine]
    texts: dict[Path, str]  # the compose files with the new line(s); empty when they say the new image already
    container: dict[str, Any] | None = None  # the old container's inspect, to create it again on a rollback
    running: set[str] = field(default_factory=set)
    originals: dict[Path, str] = field(default_factory=dict)  # the files as the plan read them (require_unchanged)


def _major_of(image: str) -> int | None:
    with contextlib.suppress(OpsError):
        tag = parse_reference(image).tag
        return version_of(tag or "").major
    return None


def plan_major(ctx: Context, to: Version, from_image: str | None) -> MajorPlan | None:
    """Given the context and the wanted Postgres version, return the major upgrade to make, or None when the
    volume holds no older major's cluster (a minor upgrade, ops.upgrade.app).

    Raise UpgradeError if the version is not of the stack's major (ops/tools.py POSTGRES_MAJOR) while the
    data is older, if the compose file still mounts the volume the old way, if the old cluster is not where
    the 15 image kept it, or if no image of the old major is known (pass from_image).
    """
    kind = KINDS["postgres"]
    lines = checked_lines(ctx, kind)
    current = current_version(kind, lines)
    if to.major != tools.POSTGRES_MAJOR:
        if to.major == current.major:
            return None  # a minor release of an older major: the same files
        raise UpgradeError(
            f"the stack runs PostgreSQL {tools.POSTGRES_MAJOR} (ops/tools.py POSTGRES_MAJOR; n8n needs 17 or newer): "
            f"upgrade to a {tools.POSTGRES_MAJOR} tag such as 18.6-trixie, not {to}"
        )
    try:
        volume, clusters = old_clusters(ctx.compose)
    except ConfigError as exc:
        if current.major >= to.major:
            raise
        raise UpgradeError(
            f"{exc}: the compose file still mounts postgres-data the old image's way (at {OLD_PGDATA}). Update the "
            f"project first (git pull: it describes {tools.POSTGRES_MAJOR} with the volume at {MOUNT}), then run this again"
        ) from exc
    older = [c for c in clusters if c.major.isdigit() and int(c.major) < to.major]
    if not older:
        return None  # nothing to move: a new image on the same files
    cluster = older[0]
    if len(older) > 1 or cluster.path != MOUNT:
        found = ", ".join(f"PostgreSQL {c.major} in {c.path}" for c in older)
        raise UpgradeError(
            f"the volume {volume.name} holds {found}, not one cluster at its root as the old image kept it: "
            f"move it by hand ({RUNBOOK})"
        )
    old_major = int(cluster.major)
    container = _old_container(ctx, old_major)
    if from_image:
        parse_reference(from_image)
        old_image = from_image
    elif _major_of(lines["postgres"].ref.text) == old_major:
        old_image = lines["postgres"].ref.text
    elif container is not None:
        old_image = str(container["Config"]["Image"])
    else:
        raise UpgradeError(
            f"the volume {volume.name} holds PostgreSQL {old_major} and no container of that major is left to take its image "
            f"from: pass --from-image with the image that ran it (the old compose file's, e.g. postgres:15.14-bookworm)"
        )
    new_refs = {s: new_reference(line.ref, to) for s, line in lines.items()}
    changed = {s: line for s, line in lines.items() if line.ref.text != new_refs[s]}
    texts = rewritten_files(changed, new_refs) if changed else {}
    originals = {path: read_text(path) for path in texts}
    return MajorPlan(volume.name, old_major, old_image, new_refs["postgres"], lines, texts, container, originals=originals)


def _old_container(ctx: Context, major: int) -> dict[str, Any] | None:
    """The project's postgres container when its image is of the old major (running or stopped), as inspected; else None."""
    state = ctx.compose.ps().get("postgres")
    if state is None or not state.container_id:
        return None
    try:
        attrs: dict[str, Any] = docker_sdk.client(ctx.compose.docker_host).containers.get(state.container_id).attrs
    except Exception:
        return None
    return attrs if _major_of(str(attrs.get("Config", {}).get("Image", ""))) == major else None


class OldServer:
    """The old major's server in a throwaway container on the volume, reached with docker exec."""

    def __init__(self, docker: DockerCli, name: str, image: str, volume: str) -> None:
        self.docker, self.name, self.image, self.volume = docker, name, image, volume

    @property
    def access(self) -> PostgresAccess:
        return PostgresAccess(("docker", "exec", "-i", self.name), env=self.docker.env)

    @property
    def psql(self) -> Psql:
        return self.access.psql()

    def start(self) -> None:
        """Start it and wait until it accepts connections. Raise ServiceError if it does not within READY_SECONDS."""
        self.remove()
        self.docker.run(
            "run", "-d", "--name", self.name, "--network", "none", "-e", f"PGDATA={OLD_PGDATA}",
            "-v", f"{self.volume}:{OLD_PGDATA}", self.image, "postgres",
        )  # fmt: skip
        wait_until(
            lambda: self.docker.ok("exec", self.name, "pg_isready", "-q", "-U", "postgres"),
            READY_SECONDS,
            f"PostgreSQL from {self.image} on {self.volume}",
        )

    def stop(self) -> None:
        """Stop it the fast way (pg_ctl -m fast: sessions ended, everything flushed, as the image's STOPSIGNAL
        SIGINT does) from inside, whatever runs as the container's first process; then remove the container."""
        stop = ("pg_ctl", "stop", "-D", OLD_PGDATA, "-m", "fast", "-w", "-t", "300")
        with contextlib.suppress(ServiceError):  # the server is the first process: its exit ends the exec too
            self.docker.run("exec", "-u", "postgres", self.name, *stop, timeout=330)
        self.docker.run("wait", self.name, timeout=60)
        self.docker.run("rm", self.name)

    def remove(self) -> None:
        if self.docker.ok("container", "inspect", self.name):
            with contextlib.suppress(OpsError):
                self.stop()
            with contextlib.suppress(OpsError):
                self.docker.run("rm", "-f", self.name)


def run(ctx: Context, plan: MajorPlan, dry_run: bool) -> UpgradeReport:
    """Given the context and the plan, move the cluster to the new major (see the module); return the report."""
    to = parse_reference(plan.new_image).tag or ""
    report = UpgradeReport(
        "postgres",
        str(plan.old_major),
        to,
        "postgres major (dump and restore)",
        "dry-run",
        images=[{**line.to_dict(), "new": plan.new_image} for s, line in plan.lines.items() if line.path in plan.texts],
    )
    if dry_run:
        report.steps = [
            f"stop every service; start PostgreSQL {plan.old_major} from {plan.old_image} on {plan.volume} (no network)",
            "fingerprint every table and pg_dumpall the cluster to .ops/upgrades/",
            f"copy {plan.volume} to {plan.volume}-pg{plan.old_major}-<time> (kept), empty it, start {plan.new_image} on it",
            "restore the dump, compare every table, start what ran and wait for ops health",
            "on failure: the old cluster back from the copy, the old container started again",
        ]
        return report
    report.outcome = "failed"
    docker = ctx.docker
    report.steps += [ensure_image(ctx, plan.new_image), ensure_image(ctx, plan.old_image)]
    plan.running = {s for s, c in ctx.compose.ps().items() if c.running}
    if "postgres" in plan.running:  # the old server answers: a held lock stops us before anything is stopped
        holder = lock_holder(ctx.psql) if _has_lock_table(ctx.psql) else None
        if holder is not None and not holder.gone():
            raise LockError(f"another operation holds the lock (pid {holder.pid} on {holder.host}): nothing was changed")
    ops_dir = ctx.settings.project_dir / ".ops"
    require_writable_dirs(ctx.settings, [ops_dir, ops_dir / "upgrades"])
    require_unchanged(plan.originals)  # before anything stops
    directory = ctx.copy_dir("postgres", str(plan.old_major), to)
    old = OldServer(
        docker, f"{ctx.config.get('name') or 'aistack'}-postgres{plan.old_major}-upgrade", plan.old_image, plan.volume
    )
    # from the first stop on, a signal (SIGTERM, a dropped ssh's SIGHUP, Ctrl-C) is an exception: the
    # finally below removes the throwaway server and starts the stack as it was, never leaving both
    with signals_as_exceptions():
        try:
            ctx.compose.run("stop")
            report.steps.append(f"stopped {', '.join(sorted(plan.running)) or 'nothing (nothing ran)'}")
            old.start()
            journal = Journal(old.psql)
            resume = f"run `ops upgrade postgres --to {to}` again (the volume holds the old cluster) or see {RUNBOOK}"
            lock = _MovingLock(old.psql, f"upgrade postgres {plan.old_major} -> {to}")
            digest = plan_hash("postgres", str(plan.old_major), to, plan.texts)
            with lock, _journaled(journal, None, "upgrade", digest, resume) as row:
                _move(ctx, plan, old, journal, lock, row, report, directory)
        finally:
            with shielded():
                old.remove()
                if report.outcome not in ("ok", "rollback-failed"):  # rolled back, or stopped before any change
                    report.notes += _start_as_before(ctx, plan)
    return report


class _MovingLock(Lock):
    """The operator lock while the cluster holding it moves: when the upgrade is already failing, a release the
    cluster cannot take (its server stopped) does not hide that failure; the row then reads stale (`ops lock break`)."""

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)
        except OpsError:
            if exc[0] is None:
                raise


def _has_lock_table(psql: Psql) -> bool:
    return bool(psql.query("SELECT 1 FROM pg_tables WHERE schemaname = 'ops' AND tablename = 'lock';"))


def _move(
    ctx: Context, plan: MajorPlan, old: OldServer, journal: Journal, lock: Lock, row: _Row, report: UpgradeReport, directory: Path
) -> None:
    """The journaled part of run, under the lock; the report's outcome says how it ended."""
    docker, compose = ctx.docker, ctx.compose
    row.step = f"fingerprinting every table of PostgreSQL {plan.old_major}"
    before = {db: fingerprints(old.access, db) for db in databases(old.access)}
    row.step = "pg_dumpall"
    dump = directory / "dumpall.sql"
    _write_private(dump, old.access.command("pg_dumpall"))
    originals = require_unchanged(plan.originals)
    _private_dir(directory / "files")
    for path, text in originals.items():
        _private_text(directory / "files" / path.name, text)
    stamp = datetime.now(UTC).strftime("%Y%m%dt%H%M%Sz")
    keep = f"{plan.volume}-pg{plan.old_major}-{stamp}"
    state = {"volume": plan.volume, "kept": keep, "old_image": plan.old_image, "tables": before, "container": plan.container}
    _private_text(directory / "state.json", json.dumps(state, indent=2, default=str))
    report.copy = str(directory)
    report.steps.append(f"dumped {len(before)} databases ({sum(len(t) for t in before.values())} tables) to {directory.name}")
    row.step = f"stopping PostgreSQL {plan.old_major}"
    old.stop()
    created = False
    try:
        row.step = f"copying the old cluster to the volume {keep}"
        if docker.ok("volume", "inspect", keep):  # `volume create` would reuse it silently
            raise UpgradeError(f"a volume {keep} exists already: nothing was changed; run the command again")
        docker.run("volume", "create", keep)
        created = True
        # compared byte for byte before the original is emptied (diff is in Debian's essential set)
        copy_and_compare = "cp -a /from/. /to/ && diff -r --no-dereference /from /to >/dev/null"
        docker.run(*_both(plan.new_image, plan.volume, keep, copy_and_compare), timeout=3600)
    except BaseException:
        with shielded():  # nothing changed: the old server again, for the journal and the lock
            if created:  # a partial copy would hold the space a full disk needs back
                with contextlib.suppress(OpsError):
                    docker.run("volume", "rm", keep)
            old.start()
        raise
    report.kept_volume = keep
    report.steps.append(f"copied the old cluster to the volume {keep} (kept)")
    try:
        row.step = f"emptying {plan.volume}"
        docker.run(*_one(plan.new_image, plan.volume, "find /volume -mindepth 1 -delete"), timeout=3600)
        row.step = "writing the new image line(s)"
        for path, text in plan.texts.items():
            _replace_file(path, text)
        row.step = f"docker compose up postgres ({plan.new_image}, a new cluster)"
        compose.up(["postgres"])
        row.step = "restoring the dump into the new cluster"
        _restore_dumpall(ctx, dump)
        journal.psql = lock.psql = ctx.psql  # the journal row and the lock came over with the dump
        row.step = "comparing every table with the old cluster's"
        after = {db: differences(tables, fingerprints(ctx.access, db)) for db, tables in before.items()}
        changed = [f"{db}: {', '.join(d)}" for db, d in after.items() if d]
        if changed:
            raise ServiceError(f"the restored cluster differs from the old one: {'; '.join(changed)}")
        back = sorted(s for s in plan.running if s != "postgres")
        if back:
            row.step = f"docker compose up {' '.join(back)}"
            compose.up(back, wait=False)
        gate = ("postgres", *probes_for(back))
        row.step = f"the health gate ({', '.join(gate)})"
        wait_healthy(ctx.settings, gate, timeout=ctx.timeout)
        report.steps.append(
            f"{to_text(plan)} runs the restored cluster, every table equal; ops health passed ({', '.join(gate)})"
        )
    except (Exception, Interrupted) as exc:  # a signal too: nothing else would put the old cluster back
        failure = _failure(row.step, exc) if isinstance(exc, Exception) else f"{exc} during {row.step}"
        with shielded():
            mark_quietly(row, "rolling-back", f"{failure}; putting the old cluster back from {keep}")
            started = time.monotonic()
            try:
                report.rollback_steps = _put_back(ctx, plan, old, originals, keep)
                journal.psql = lock.psql = old.psql
            except Exception as again:
                detail = f"{failure}; the rollback failed too: {_reason(again)}"
                report.outcome = "rollback-failed"
                finish_quietly(row, "rollback-failed", detail)
                raise UpgradeError(
                    f"upgrade postgres: {detail}. The old cluster is intact in the volume {keep} and dumped in {dump}: {RUNBOOK}"
                ) from again
            report.rollback_seconds = round(time.monotonic() - started, 1)
            report.outcome, report.error = "rolled-back", failure
            finish_quietly(row, "rolled-back", f"{failure}; the old cluster is back in {plan.volume}")
        if isinstance(exc, Interrupted):
            raise
        return
    report.outcome = "ok"
    row.finish("ok", f"postgres {plan.old_major} -> {to_text(plan)} by dump and restore; old cluster kept in {keep}")


def to_text(plan: MajorPlan) -> str:
    return parse_reference(plan.new_image).tag or plan.new_image


def _one(image: str, volume: str, script: str) -> tuple[str, ...]:
    return ("run", "--rm", "--network", "none", "-v", f"{volume}:/volume", "--entrypoint", "sh", image, "-c", script)


def _both(image: str, source: str, target: str, script: str) -> tuple[str, ...]:
    mounts = ("-v", f"{source}:/from:ro", "-v", f"{target}:/to")
    return ("run", "--rm", "--network", "none", *mounts, "--entrypoint", "sh", image, "-c", script)


def _restore_dumpall(ctx: Context, dump: Path) -> None:
    """Given pg_dumpall's output, run it in the new cluster with psql. Raise ServiceError naming the first error
    other than the superuser role existing already."""
    argv = ctx.compose.argv("exec", "-T", "postgres", "psql", "-X", "-q", "-U", "postgres", "-d", "postgres")
    env = {**os.environ, **({"DOCKER_HOST": ctx.compose.docker_host} if ctx.compose.docker_host else {})}
    with dump.open("rb") as source:
        try:
            proc = subprocess.run(argv, stdin=source, capture_output=True, env=env, timeout=3600, start_new_session=in_shield())
        except subprocess.TimeoutExpired as exc:
            raise ServiceError("restoring the dump did not finish within 3600 s") from exc
    stderr = proc.stderr.decode(errors="replace")
    errors = [line for line in stderr.splitlines() if "ERROR:" in line and ALREADY_THERE not in line]
    if proc.returncode != 0 or errors:
        raise ServiceError(f"psql restoring the dump: {(errors or [stderr.strip()])[0][-600:]}")


def _put_back(ctx: Context, plan: MajorPlan, old: OldServer, originals: dict[Path, str], keep: str) -> list[str]:
    steps = []
    ctx.compose.run("stop")
    ctx.compose.stop_and_remove(["postgres"])
    steps.append("stopped every service, removed the new postgres container")
    for path, text in originals.items():
        if read_text(path) != text:
            _replace_file(path, text)
            steps.append(f"wrote {path.name} back as it was")
    ctx.docker.run(*_both(plan.new_image, keep, plan.volume, "find /to -mindepth 1 -delete && cp -a /from/. /to/"), timeout=3600)
    steps.append(f"copied the old cluster back from {keep} into {plan.volume}")
    old.start()
    steps.append(f"PostgreSQL {plan.old_major} started on it again ({plan.old_image})")
    return steps


def _start_as_before(ctx: Context, plan: MajorPlan) -> list[str]:
    """After a rollback (or a failure before anything changed), start the old container and what ran; return notes."""
    notes: list[str] = []
    try:
        if plan.container is not None and "postgres" not in ctx.compose.ps():
            _recreate(ctx, plan.container)
            notes.append(f"created the old postgres container again from its saved configuration ({plan.old_image})")
        back = sorted(plan.running)
        if back:
            ctx.compose.run("start", *back)
            gate = probes_for(back)
            if gate:  # an empty gate would ask every probe, services that did not run too
                wait_healthy(ctx.settings, gate, timeout=ctx.timeout)
            notes.append(f"started {', '.join(back)} as before" + (f"; ops health passed ({', '.join(gate)})" if gate else ""))
    except OpsError as exc:
        notes.append(f"could not start what ran before: {exc}")
    return notes


def _recreate(ctx: Context, attrs: dict[str, Any]) -> None:
    """Create the container attrs (an inspect) describes again, with its labels (compose adopts it), on its networks."""
    client = docker_sdk.client(ctx.compose.docker_host)
    networks = list((attrs.get("NetworkSettings", {}).get("Networks") or {}).items())
    body = {**attrs["Config"], "HostConfig": attrs["HostConfig"]}
    if networks:
        name, endpoint = networks[0]
        body["NetworkingConfig"] = {"EndpointsConfig": {name: {"Aliases": endpoint.get("Aliases")}}}
    try:
        created = client.api.create_container_from_config(body, name=str(attrs.get("Name", "")).lstrip("/") or None)
        for name, endpoint in networks[1:]:
            client.api.connect_container_to_network(created["Id"], name, aliases=endpoint.get("Aliases"))
    except Exception as exc:
        raise ServiceError(f"cannot create the old postgres container again: {exc}") from exc
