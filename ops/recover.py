"""``ops recover``: the whole stack back on an empty host, from the newest good backup in GCS.

In order, each phase timed: vps.env (restored when absent; an existing one
must hold the backup's encryption keys), then, once the host is found empty
of the project's containers and volumes, the Docker volumes (from the newest
run holding them: the weekly one), Postgres (roles, then every database),
Qdrant's collections, the truth repository and ``.ops/``; then the stack up
and health-gated (ops.runtime.gate.wait_healthy).

The key guard (ops.keyguard) runs three times before any service but
Postgres and Qdrant starts: the backup's recorded fingerprints against an
existing vps.env, n8n's settings file in the restored n8n-data volume, and
the ``ops_key_guard`` table in the restored ``postgres`` database. Each names
the key that differs: services started with a fresh key over data encrypted
with the old one would leave it undecryptable.

Objects are restored by the sources' own ``restore(..., "live")`` without
``ops backup restore``'s safety backup: there is nothing on an empty host to save.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops import keyguard
from ops.backup import catalog
from ops.backup.context import BackupContext, backup_context, with_identity
from ops.backup.manifest import BackupNotFound, Entry, Manifest
from ops.backup.restore import feeder
from ops.backup.sources import get_source
from ops.backup.sources import postgres as postgres_source
from ops.backup.sources import secrets as secrets_source
from ops.backup.sources import volumes as volumes_source
from ops.config import ENV_FILE, Settings, load_settings
from ops.errors import ConfigError, OpsError
from ops.health.probes import PROBES
from ops.runtime.compose import Compose
from ops.runtime.gate import wait_healthy

log = logging.getLogger("ops.recover")
N8N_VOLUME = "n8n-data"  # the compose volume n8n keeps its settings file (``config``) in
N8N_SETTINGS = "config"


@dataclass
class Phase:
    name: str
    seconds: float
    detail: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seconds": round(self.seconds, 2), "detail": self.detail}


@dataclass
class RecoverReport:
    backup_id: str
    volumes_backup: str = ""
    phases: list[Phase] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)
    dry_run: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "backup": self.backup_id,
            "volumes_backup": self.volumes_backup,
            "dry_run": self.dry_run,
            "planned": self.planned,
            "phases": [p.to_dict() for p in self.phases],
            "seconds": round(self.seconds, 2),
        }


def choose(ctx: BackupContext, backup_id: str | None) -> tuple[Manifest, Manifest | None]:
    """Return (the backup to recover, the run to take the volumes from, or None when no run holds any).

    Without backup_id: the newest complete run holding Postgres (pre-restore runs aside). The volumes come
    from that run if it holds them, else from the run holding them nearest to it in time (a weekly one).
    Raise BackupNotFound if there is no such backup.
    """
    runs = [r for r in catalog.runs(ctx) if r.manifest is not None]
    if backup_id is not None:
        main = catalog.load(ctx, backup_id)
        listed = next((r for r in runs if r.run_id == backup_id), None)
        if missing := _missing_objects(main, listed.objects if listed else []):
            raise BackupNotFound(f"backup {backup_id} lacks objects its manifest lists: {', '.join(missing[:5])}")
    else:
        good = [
            r.manifest
            for r in runs
            if r.manifest and r.manifest.status == "complete" and r.manifest.schedule != "pre-restore"
            and "postgres" in r.manifest.held() and not _missing_objects(r.manifest, r.objects)
        ]  # fmt: skip
        if not good:
            raise BackupNotFound(f"no complete backup with postgres in gs://{ctx.bucket.name}/{ctx.run_prefix()}")
        main = good[-1]
    if "volumes" in main.held():
        return main, main
    held = [  # the same rule as the main run: a pre-restore run holds what the operator rolled back
        r.manifest
        for r in runs
        if r.manifest and r.manifest.status == "complete" and r.manifest.schedule != "pre-restore"
        and "volumes" in r.manifest.held() and not _missing_objects(r.manifest, r.objects)
    ]  # fmt: skip
    # the weekly run nearest in time: Sunday's 3:30 one is newer than that night's 2:00 daily, and the better match
    return main, min(held, key=lambda m: abs(m.created - main.created), default=None)


def _missing_objects(manifest: Manifest, objects: list[str]) -> list[str]:
    """Given a run's manifest and the objects the bucket lists for it, return those the manifest holds but the bucket lacks."""
    listed = set(objects)
    return [e.object for e in manifest.entries if e.source not in manifest.failed and e.object not in listed]


def run_recover(
    settings: Settings,
    backup_id: str | None = None,
    identity: Path | None = None,
    services: tuple[str, ...] = (),
    dry_run: bool = False,
    health_timeout: float = 300.0,
) -> RecoverReport:
    """Given the project's Settings (vps.env may be absent: OPS_BACKUP_* from the environment then reach the
    bucket), recover the stack from backup_id (default: the newest good one) onto this host; return the report.

    identity is the age identity file (encrypted backups); services limits what is started and health-gated
    (default: every service of the enabled profiles). Raise KeyMismatch naming a key that differs from the
    data's, ConfigError for a missing bucket or identity, a host that is not empty or a vps.env that cannot be
    had, BackupNotFound, ServiceError (NotHealthy) when the stack does not come up healthy.
    """
    started = time.monotonic()
    if not settings.effective_env.get("OPS_BACKUP_BUCKET", "").strip():
        raise ConfigError(
            "ops recover needs the bucket: OPS_BACKUP_BUCKET=<bucket> (and OPS_BACKUP_PREFIX if not 'backups')"
            " in vps.env or the environment"
        )
    ctx = with_identity(backup_context(settings), identity)
    report = RecoverReport("", dry_run=dry_run)
    with _phase(report, "choose the backup") as notes:
        manifest, volumes_run = choose(ctx, backup_id)
        report.backup_id, report.volumes_backup = manifest.run_id, volumes_run.run_id if volumes_run else ""
        notes.append(f"{manifest.run_id} ({', '.join(sorted(manifest.held()))})")
        notes.append(f"volumes from {volumes_run.run_id}" if volumes_run else "no backup holds volumes")
        for run in {manifest.run_id: manifest, **({volumes_run.run_id: volumes_run} if volumes_run else {})}.values():
            if run.encrypted and ctx.codec.identity is None:
                raise ConfigError(
                    f"backup {run.run_id} is encrypted: give its age identity with --identity FILE (or - to read it from stdin)"
                )
    secrets = manifest.select(secrets_source.NAME)
    if settings.env_file_present and secrets:
        keyguard.check(secrets[0].meta.get("keys", {}), settings.env, f"backup {manifest.run_id}")
    elif not settings.env_file_present and not secrets:
        raise ConfigError(
            f"backup {manifest.run_id} holds no vps.env (backups were not encrypted, or it predates issue 13):"
            f" put the old vps.env in {settings.project_dir} first"
        )
    entries = [e for e in manifest.entries if e.source not in ("volumes", "secrets") and e.source not in manifest.failed]
    volume_entries = volumes_run.select("volumes") if volumes_run else []
    report.planned = [f"{e.source}/{e.name}" for e in [*secrets, *volume_entries, *entries]]
    if dry_run:
        if settings.env_file_present:  # what a real run would refuse first
            _require_empty(ctx)
            _require_volume_targets(ctx, volume_entries)
        report.seconds = time.monotonic() - started
        return report
    deadline = time.monotonic() + ctx.deadline_seconds

    with _phase(report, "vps.env") as notes:
        _require_empty(ctx)  # before anything is written: a refused recover leaves the host as it was
        restored = not settings.env_file_present
        if restored:
            notes.append(get_source("secrets").restore(ctx, secrets[0], "live", feeder(ctx, manifest, secrets[0], deadline)))
        else:
            notes.append("kept the existing vps.env: its encryption keys are the backup's")
        try:
            settings = load_settings(settings.project_dir)
            settings.require_safe_secrets()
            ctx = with_identity(backup_context(settings), identity)
            _require_empty(ctx)  # again under the restored vps.env's COMPOSE_PROJECT_NAME
            _require_volume_targets(ctx, volume_entries)
        except OpsError:
            if restored:  # ours, and the backup still has it
                (settings.project_dir / ENV_FILE).unlink(missing_ok=True)
            raise
        compose = Compose.for_settings(settings)

    with _phase(report, "volumes") as notes:
        for entry in volume_entries:
            assert volumes_run is not None
            notes.append(volumes_source.restore(ctx, entry, "live", feeder(ctx, volumes_run, entry, deadline)))
        _check_n8n_key(ctx, settings)

    with _phase(report, "postgres") as notes:
        compose.up(["postgres"])
        compose.run("run", "--rm", "-T", "postgres-init")  # the apps' roles and databases, each owned by its role
        pg_entries = sorted(manifest.select("postgres"), key=lambda e: e.meta.get("kind") != "roles")  # roles first
        for entry in pg_entries:
            notes.append(postgres_source.restore(ctx, entry, "live", feeder(ctx, manifest, entry, deadline)))
        if unverified := _check_key_table(ctx, settings):
            notes.append(unverified)

    for source in ("qdrant", "git", "state"):
        chosen = manifest.select(source)
        if not chosen or source in manifest.failed:
            continue
        with _phase(report, source) as notes:
            if source == "qdrant":
                compose.up(["qdrant"])
            if source == "git" and ctx.git_repo.exists() and any(ctx.git_repo.iterdir()):
                notes.append(f"kept the existing repository {ctx.git_repo}")
                continue
            for entry in chosen:
                notes.append(get_source(source).restore(ctx, entry, "live", feeder(ctx, manifest, entry, deadline)))

    with _phase(report, "stack up") as notes:
        compose.up(list(services), timeout=int(health_timeout))
        notes.append(f"started {', '.join(services) or 'every service of the enabled profiles'}")
    with _phase(report, "health") as notes:
        probed = tuple(s for s in services if s in {p.NAME for p in PROBES})
        health = wait_healthy(settings, probed, timeout=health_timeout)
        notes.append(f"healthy: {', '.join(r.name for r in health.results if not r.skipped) or 'nothing probed'}")
    report.seconds = time.monotonic() - started
    return report


@contextmanager
def _phase(report: RecoverReport, name: str) -> Iterator[list[str]]:
    """Time one phase into the report; a failure names the phase."""
    phase = Phase(name, 0.0)
    clock = time.monotonic()
    log.info("recover: %s", name)
    try:
        yield phase.detail
    except OpsError as exc:
        if isinstance(exc, keyguard.KeyMismatch | BackupNotFound) or name == "choose the backup":
            raise
        exc.args = (f"recover failed at {name}: {exc}",)  # the same error (NotHealthy keeps its report)
        raise
    finally:
        phase.seconds = time.monotonic() - clock
        report.phases.append(phase)


def _require_volume_targets(ctx: BackupContext, entries: list[Entry]) -> None:
    """Raise ConfigError if a volume the backup holds would not land in this compose project, or exists already.

    The archive names the volume as it was at backup time (<project>_<volume>); restored under another
    COMPOSE_PROJECT_NAME it would replace another stack's data (a recover test beside production).
    """
    prefix = f"{ctx.compose_project}_"
    foreign = [e.meta.get("volume", "?") for e in entries if not str(e.meta.get("volume", "")).startswith(prefix)]
    if foreign:
        raise ConfigError(
            f"the backup's volumes {', '.join(foreign)} do not belong to compose project {ctx.compose_project!r} "
            f"({prefix}<volume>): set COMPOSE_PROJECT_NAME in vps.env to the backup's project"
        )
    existing = [str(e.meta["volume"]) for e in entries if _volume_exists(ctx, str(e.meta["volume"]))]
    if existing:
        raise ConfigError(
            f"this host is not empty: volume(s) {', '.join(existing)} exist already; ops recover restores onto an empty"
            f" host (to start over: docker compose -p {ctx.compose_project} down --volumes)"
        )


def _volume_exists(ctx: BackupContext, volume: str) -> bool:
    proc = subprocess.run(
        [*ctx.docker, "volume", "inspect", volume], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    return proc.returncode == 0


def _require_empty(ctx: BackupContext) -> None:
    """Raise ConfigError if the compose project has any container or volume on this engine."""
    label = f"label={volumes_source.PROJECT_LABEL}={ctx.compose_project}"
    found = []
    for kind in ("container", "volume"):
        argv = (
            [*ctx.docker, kind, "ls", "-q", "--filter", label]
            if kind == "volume"
            else [*ctx.docker, "ps", "-aq", "--filter", label]
        )
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise ConfigError(f"docker {kind} listing failed: {proc.stderr.strip()[-300:]}")
        found += [f"{kind} {name}" for name in proc.stdout.split()]
    if found:
        raise ConfigError(
            f"this host is not empty: compose project {ctx.compose_project} has {', '.join(found[:6])}"
            f"{' ...' if len(found) > 6 else ''}; ops recover restores onto an empty host (to replace some data,"
            f" use ops backup restore --into live; to start over, docker compose -p {ctx.compose_project} down --volumes)"
        )


def _check_n8n_key(ctx: BackupContext, settings: Settings) -> None:
    """Raise KeyMismatch if n8n's settings file in the restored n8n-data volume holds another key than vps.env."""
    volume = f"{ctx.compose_project}_{N8N_VOLUME}"
    if not _volume_exists(ctx, volume):  # no backup of it: `docker run -v` would create it without compose's labels
        return
    proc = subprocess.run(
        [*ctx.docker, "run", "--rm", "--network", "none", "-v", f"{volume}:/volume:ro", "--entrypoint", "cat",
         ctx.helper_image, f"/volume/{N8N_SETTINGS}"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    key = keyguard.n8n_settings_key(proc.stdout) if proc.returncode == 0 else ""
    if key:
        recorded = {"N8N_ENCRYPTION_KEY": keyguard.fingerprint(key)}
        keyguard.check(recorded, settings.env, f"n8n's settings file (volume {volume})")


def _check_key_table(ctx: BackupContext, settings: Settings) -> str:
    """Raise KeyMismatch if the restored ops_key_guard table records other keys than vps.env's; else record
    those it does not name yet (the rows it has stay as restored: their salted fingerprints still match).

    Return a note naming the keys nothing could be compared with ("" when every key was), since those
    are recorded as vps.env has them, unverified.
    """
    psql = ctx.postgres.psql()
    recorded: dict[str, str] = {}
    if psql.query(keyguard.EXISTS_SQL) == [["t"]]:
        recorded = {row[0]: row[1] for row in psql.query(keyguard.READ_SQL)}
        keyguard.check(recorded, settings.env, "the restored Postgres (table ops_key_guard)")
    missing = {name: value for name, value in settings.env.items() if name in keyguard.KEYS and name not in recorded}
    if missing:
        psql.query(keyguard.record_sql(missing))
        return (
            f"{', '.join(sorted(missing))}: the backup recorded no fingerprint (made before the key guard), so"
            " vps.env's value is taken unverified; check that stored credentials decrypt"
        )
    return ""
