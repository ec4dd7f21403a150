"""Docker volumes of the compose project: one tar stream each, read by a throwaway container (weekly).

Volumes that another source covers consistently (Postgres, Qdrant) or that
are too big to matter (ClickHouse) are left out by OPS_BACKUP_VOLUMES_EXCLUDE.
A restore writes into a new volume ``<name>-restored`` (scratch) or into the
volume itself (live), which must not be in use by a running container.
"""

from __future__ import annotations

import subprocess

from ops.backup.context import BackupContext
from ops.backup.manifest import Entry
from ops.backup.pipeline import Command
from ops.backup.sources.base import Emit, Feed
from ops.errors import ConfigError, ServiceError

NAME = "volumes"
SCHEDULE = "weekly"


def _docker(ctx: BackupContext, *args: str) -> str:
    try:
        proc = subprocess.run([*ctx.docker, *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"docker {args[0]} failed: {exc}") from exc
    if proc.returncode != 0:
        raise ServiceError(f"docker {' '.join(args[:2])} failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip()


def volumes(ctx: BackupContext) -> list[str]:
    """Return the project's volumes (by compose label), minus the excluded ones."""
    label = f"label=com.docker.compose.project={ctx.compose_project}"
    names = _docker(ctx, "volume", "ls", "-q", "--filter", label).split()
    prefix = f"{ctx.compose_project}_"
    return sorted(n for n in names if n.removeprefix(prefix) not in ctx.volumes_exclude and n not in ctx.volumes_exclude)


def _tar(ctx: BackupContext, volume: str, mode: str, *args: str) -> Command:
    return Command(
        (*ctx.docker, "run", "--rm", "-i", "--network", "none", "-v", f"{volume}:/volume{mode}", "--entrypoint", "tar",
         ctx.helper_image, "-C", "/volume", *args)
    )  # fmt: skip


def backup(ctx: BackupContext, emit: Emit) -> None:
    for volume in volumes(ctx):
        emit(f"{volume}.tar", _tar(ctx, volume, ":ro", "--numeric-owner", "-cf", "-", "."), {"volume": volume})


def restore(ctx: BackupContext, entry: Entry, into: str, feed: Feed) -> str:
    volume = entry.meta["volume"] + ("-restored" if into == "scratch" else "")
    users = _docker(ctx, "ps", "-q", "--filter", f"volume={volume}")
    if users:
        raise ConfigError(f"volume {volume} is in use by running container(s) {users.split()}: stop them first")
    if into == "scratch":
        _docker(ctx, "volume", "rm", "-f", volume)
    _docker(ctx, "volume", "create", volume)
    feed(_tar(ctx, volume, "", "--numeric-owner", "-xpf", "-"))
    return f"volume {entry.meta['volume']} restored into {volume}"
