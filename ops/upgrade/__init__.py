"""`ops upgrade SERVICE --to VERSION`: a new image for a service whose migrations only go forward, undone if it fails.

Given Settings, a service (n8n, langfuse, litellm, postgres) and a release tag, run_upgrade
checks the input (a known service, a version, newer than what runs), then under the operator
lock and journaled: copies the service's data to the VM's disk (its databases and volumes,
the service stopped; an off-VM backup too when OPS_BACKUP_BUCKET is set), changes the tag on
the `image:` line compose takes the image from, pulls the image unless the engine has it,
starts the service and waits for `ops health` to pass (ops.runtime.gate). If any of that
fails, the old image line is written back, the data restored from the copy (each table
checked against it) and the old image started and health-gated: journaled ``rolled-back``,
and the report's outcome says so. A new Postgres major goes by dump and restore
(ops.upgrade.postgres_major). Each kind of service is one module: ops.upgrade.app (n8n,
Langfuse, LiteLLM, a Postgres minor), ops.upgrade.postgres_major.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ops.backup.context import postgres_access
from ops.config import Settings
from ops.errors import ConfigError
from ops.journal import Psql
from ops.runtime.compose import Compose
from ops.upgrade.copy import DockerCli
from ops.upgrade.plan import UpgradeError, kind_of, parse_version

__all__ = ["UpgradeError", "UpgradeReport", "run_upgrade", "upgrade_text"]

DEFAULT_TIMEOUT = 300.0  # seconds the new (or, on a rollback, the old) version has to pass its health probe


@dataclass
class UpgradeReport:
    service: str
    current: str
    to: str
    path: str  # what kind of upgrade: "new image", "postgres minor", "postgres major (dump and restore)"
    outcome: str  # ok | rolled-back | dry-run
    images: list[dict[str, Any]] = field(default_factory=list)  # each image line: file, line, image, new
    steps: list[str] = field(default_factory=list)
    copy: str = ""  # the pre-upgrade copy's directory
    kept_volume: str = ""  # a Postgres major: the old cluster's copy, until the operator removes it
    error: str = ""  # what failed, when it rolled back
    rollback_steps: list[str] = field(default_factory=list)
    rollback_seconds: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome in ("ok", "dry-run")

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


@dataclass
class Context:
    """What an upgrade acts on: the settings, compose, the docker CLI, Postgres's programs and psql, compose's config."""

    settings: Settings
    compose: Compose
    docker: DockerCli
    config: dict[str, Any]
    timeout: float

    @property
    def psql(self) -> Psql:
        return Psql(tuple(self.compose.argv("exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "postgres")))

    @property
    def access(self) -> Any:
        return postgres_access(self.settings)

    def image_of(self, service: str) -> str:
        return str(((self.config.get("services") or {}).get(service) or {}).get("image") or "")

    def volume_name(self, name: str) -> str:
        """Given a compose volume (n8n-data), return its Docker volume's name (aistack_n8n-data)."""
        volume = (self.config.get("volumes") or {}).get(name)
        if volume is None:
            raise ConfigError(f"the compose file declares no volume {name!r}")
        return str((volume or {}).get("name") or name)

    def copy_dir(self, service: str, current: str, to: str) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return self.settings.project_dir / ".ops" / "upgrades" / f"{stamp}-{service}-{current}-to-{to}"


def check_timeout(timeout: float) -> None:
    """Return if timeout is a usable health-gate timeout. Raise ConfigError naming it otherwise."""
    if not 0 < timeout <= 3600:  # also NaN
        raise ConfigError(f"--timeout must be more than 0 and at most 3600 seconds, got {timeout:g}")


def run_upgrade(
    settings: Settings,
    service: str,
    version: str,
    *,
    dry_run: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    from_image: str | None = None,
) -> UpgradeReport:
    """Given Settings, a service and a release tag, upgrade it (or with dry_run, say what would change); return the report.

    The report's outcome is ok, dry-run, or rolled-back (the old image and data back, health-gated).
    from_image: a Postgres major upgrade's old server image, when no container of it is left.
    Raise UpgradeError for an unknown service, a malformed version, a downgrade or the same version
    (nothing changed), ConfigError for a bad timeout, LockError if another operation holds the lock,
    OpsError if the copy fails (nothing changed) or the rollback fails (journaled rollback-failed,
    the copy's directory named).
    """
    kind = kind_of(service)
    to = parse_version(version)
    check_timeout(timeout)
    compose = Compose.for_settings(settings)
    config: dict[str, Any] = json.loads(compose.run("config", "--format", "json").stdout)
    ctx = Context(settings, compose, DockerCli.for_compose(compose), config, timeout)
    if kind.name == "postgres":
        from ops.upgrade.postgres_major import plan_major
        from ops.upgrade.postgres_major import run as run_major

        major = plan_major(ctx, to, from_image)
        if major is not None:
            return run_major(ctx, major, dry_run)
    from ops.upgrade.app import run as run_app

    return run_app(ctx, kind, to, dry_run)


def upgrade_text(report: UpgradeReport) -> str:
    """Given a report, return it as lines for the operator."""
    head = f"{report.service} {report.current} -> {report.to} ({report.path}): {report.outcome}"
    lines = [head]
    for image in report.images:
        lines.append(f"  {image['file']} line {image['line']}: {image['image']} -> {image['new']}")
    lines += [f"  {step}" for step in report.steps]
    if report.error:
        lines.append(f"failed: {report.error}")
    if report.rollback_steps:
        took = f" in {report.rollback_seconds:.0f} s" if report.rollback_seconds is not None else ""
        lines.append(f"rolled back{took}:")
        lines += [f"  {step}" for step in report.rollback_steps]
    if report.copy:
        lines.append(f"pre-upgrade copy: {report.copy}")
    if report.kept_volume:
        lines.append(
            f"the old cluster is kept in the volume {report.kept_volume}: remove it once you are sure "
            f"(`docker volume rm {report.kept_volume}`)"
        )
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)
