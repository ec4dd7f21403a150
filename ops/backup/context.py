"""What a backup action works with, built once from Settings: the bucket, the codec, and how to reach each source.

In the stack, Postgres programs run in the postgres container (``docker
compose exec -T postgres ...``), volumes are read by a throwaway container,
and Qdrant answers on its loopback port. ``OPS_POSTGRES_URL`` points the
Postgres programs at a server on this machine instead (local mode, tests).
"""

from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from ops import keyguard, tools
from ops.backup.codec import Codec
from ops.backup.gcs import Bucket
from ops.backup.pipeline import Command
from ops.config import Settings, check_url
from ops.errors import ConfigError
from ops.journal import Psql


@dataclass(frozen=True)
class PostgresAccess:
    """How to run Postgres client programs (pg_dump, pg_restore, psql) as the superuser."""

    prefix: tuple[str, ...] = ()  # `docker compose exec -T postgres` in the stack; () runs local programs
    conn: tuple[str, ...] = ("-U", "postgres")
    env: tuple[tuple[str, str], ...] = ()
    bin_dir: str = ""  # local programs' directory; tests point it at wrappers

    def command(self, program: str, *args: str, connect: bool = True) -> Command:
        conn = self.conn if connect else ()
        if self.prefix:
            return Command((*self.prefix, program, *conn, *args), self.env)
        path = str(Path(self.bin_dir) / program) if self.bin_dir else (tools.postgres_bin(program) or program)
        return Command((path, *conn, *args), self.env)

    def psql(self, database: str = "postgres") -> Psql:
        return Psql(self.command("psql", "-d", database).argv, self.env)

    @classmethod
    def from_url(cls, url: str, bin_dir: str = "") -> PostgresAccess:
        """Given postgresql://user:password@host:port, return local access. Raise ConfigError if malformed."""
        # the error names the variable and the problem, never the password (it goes to the cron log)
        parts = check_url("OPS_POSTGRES_URL", url, ("postgres", "postgresql"), "postgresql://postgres:PASSWORD@127.0.0.1:5432")
        conn = ("-h", parts.hostname or "", "-p", str(parts.port or 5432), "-U", unquote(parts.username or "postgres"))
        env = (("PGPASSWORD", unquote(parts.password)),) if parts.password else ()
        return cls((), conn, env, bin_dir)


@dataclass(frozen=True)
class BackupContext:
    bucket: Bucket
    prefix: str
    codec: Codec
    postgres: PostgresAccess
    qdrant_url: str
    qdrant_api_key: str
    git_repo: Path
    docker: tuple[str, ...]  # the docker CLI (DOCKER_HOST from the environment reaches a remote engine)
    compose_project: str
    volumes_exclude: tuple[str, ...]
    helper_image: str  # any image with tar, to read and write volumes
    keep_daily_days: int
    keep_weekly_weeks: int
    ping_url: str
    project_dir: Path
    deadline_seconds: int = 10800  # a backup, restore or drill still running then is stopped, every stage killed
    lock_wait_seconds: int = 600  # pg_dump --lock-wait-timeout: a table locked longer fails the dump
    # the guarded keys' fingerprints (ops.keyguard), never the keys: recorded with the data at each backup
    key_fingerprints: tuple[tuple[str, str], ...] = ()
    host: str = field(default_factory=socket.gethostname)

    def object_name(self, run_id: str, *parts: str) -> str:
        return "/".join([self.prefix, run_id, *parts]) if self.prefix else "/".join([run_id, *parts])

    def run_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""


def _positive(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, got {raw!r}")
    return int(raw)


def postgres_access(settings: Settings) -> PostgresAccess:
    """Given Settings, return how to run Postgres programs as the superuser: in the stack's postgres container,
    or as OPS_POSTGRES_URL says (local mode, tests). Raise ConfigError if that URL is malformed."""
    env = settings.effective_env
    if env.get("OPS_POSTGRES_URL"):
        return PostgresAccess.from_url(env["OPS_POSTGRES_URL"], env.get("OPS_POSTGRES_BIN_DIR", ""))
    from ops.runtime.compose import Compose

    return PostgresAccess(tuple(Compose.for_settings(settings).argv("exec", "-T", "postgres")))


def with_identity(ctx: BackupContext, identity: Path | None) -> BackupContext:
    """Given a context and the age identity given at run time (--identity; None: as configured), return the context using it."""
    if identity is None:
        return ctx
    return dataclasses.replace(ctx, codec=dataclasses.replace(ctx.codec, identity=identity))


def backup_context(settings: Settings, bucket: Bucket | None = None) -> BackupContext:
    """Given Settings, return the backup context. Raise ConfigError on a missing bucket name or a bad value."""
    env = settings.effective_env
    if bucket is None:
        bucket = Bucket(
            env.get("OPS_BACKUP_BUCKET", ""),
            endpoint=env.get("OPS_BACKUP_GCS_ENDPOINT", ""),
            credentials_file=env.get("OPS_BACKUP_GCS_CREDENTIALS", ""),
        )
    recipients = tuple(r.strip() for r in env.get("OPS_BACKUP_AGE_RECIPIENTS", "").split(",") if r.strip())
    identity = env.get("OPS_BACKUP_AGE_IDENTITY", "")
    codec = Codec(_positive(env, "OPS_BACKUP_ZSTD_LEVEL", 3), recipients, Path(identity).expanduser() if identity else None)
    project = env.get("COMPOSE_PROJECT_NAME") or settings.project_dir.name
    postgres = postgres_access(settings)
    git_repo = Path(env.get("OPS_GIT_REPO") or env.get("OPS_EVENTS_REPO") or "./truth")
    if not git_repo.is_absolute():
        git_repo = settings.project_dir / git_repo
    prefix = env.get("OPS_BACKUP_PREFIX", "backups").strip("/")
    return BackupContext(
        bucket=bucket,
        prefix=prefix,
        codec=codec,
        postgres=postgres,
        qdrant_url=(env.get("OPS_QDRANT_URL") or "http://127.0.0.1:6333").rstrip("/"),
        qdrant_api_key=env.get("QDRANT_API_KEY", ""),
        git_repo=git_repo,
        docker=("docker",),
        compose_project=project,
        volumes_exclude=tuple(v.strip() for v in env.get("OPS_BACKUP_VOLUMES_EXCLUDE", "").split(",") if v.strip()),
        helper_image=env.get("OPS_BACKUP_HELPER_IMAGE", "") or "postgres:18.6-trixie",  # the stack's postgres image
        keep_daily_days=_positive(env, "OPS_BACKUP_KEEP_DAILY_DAYS", 30),
        keep_weekly_weeks=_positive(env, "OPS_BACKUP_KEEP_WEEKLY_WEEKS", 4),
        ping_url=env.get("OPS_BACKUP_PING_URL", ""),
        project_dir=settings.project_dir,
        deadline_seconds=_positive(env, "OPS_BACKUP_DEADLINE_SECONDS", 10800),
        lock_wait_seconds=_positive(env, "OPS_BACKUP_LOCK_WAIT_SECONDS", 600),
        key_fingerprints=tuple(keyguard.fingerprints(settings.env).items()),
    )
