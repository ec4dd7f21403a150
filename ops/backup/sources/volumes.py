"""Docker volumes of the compose project: one tar stream each, read by a throwaway container (weekly).

Volumes that another source covers consistently (Postgres, Qdrant) or that
are too big to matter (ClickHouse) are left out by OPS_BACKUP_VOLUMES_EXCLUDE.
A restore writes into a new volume ``<name>-restored`` (scratch) or into the
volume itself (live), which must not be in use by a running container. A
live restore replaces the volume's files: the archive is unpacked into a
staging directory inside the volume, and only once that succeeded are the old
files removed and the staged ones moved in (renames on one filesystem). A
volume a live restore creates (the stack not up yet) gets compose's labels,
so compose adopts it and later backups, which find volumes by label, see it.
"""

from __future__ import annotations

import subprocess
import uuid

from ops.backup.context import BackupContext
from ops.backup.manifest import Entry
from ops.backup.pipeline import Command
from ops.backup.sources.base import Emit, Feed
from ops.errors import ConfigError, ServiceError

NAME = "volumes"
SCHEDULE = "weekly"
# source: docker/compose pkg/api/labels.go (ProjectLabel, VolumeLabel); compose finds its volumes by these
PROJECT_LABEL = "com.docker.compose.project"
VOLUME_LABEL = "com.docker.compose.volume"
# after a complete unpack into STAGING: the old files go, the staged ones move in, the root keeps the archive's owner/mode
SWAP = """set -e
cd /volume
find . -mindepth 1 -maxdepth 1 ! -name "$1" -exec rm -rf {} +
find "$1" -mindepth 1 -maxdepth 1 -exec mv -t . {} +
chown --reference="$1" . && chmod --reference="$1" .
rmdir "$1"
"""


def _docker(ctx: BackupContext, *args: str) -> str:
    try:
        proc = subprocess.run([*ctx.docker, *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"docker {args[0]} failed: {exc}") from exc
    if proc.returncode != 0:
        raise ServiceError(f"docker {' '.join(args[:2])} failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip()


def _exists(ctx: BackupContext, volume: str) -> bool:
    try:
        proc = subprocess.run(
            [*ctx.docker, "volume", "inspect", volume], capture_output=True, timeout=120, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"docker volume inspect failed: {exc}") from exc
    return proc.returncode == 0


def excluded(ctx: BackupContext, volume: str) -> bool:
    """Return whether OPS_BACKUP_VOLUMES_EXCLUDE leaves volume out (by its full or its compose name)."""
    return volume in ctx.volumes_exclude or volume.removeprefix(f"{ctx.compose_project}_") in ctx.volumes_exclude


def volumes(ctx: BackupContext) -> list[str]:
    """Return the project's volumes (by compose label), minus the excluded ones."""
    label = f"label=com.docker.compose.project={ctx.compose_project}"
    names = _docker(ctx, "volume", "ls", "-q", "--filter", label).split()
    return sorted(n for n in names if not excluded(ctx, n))


def _helper(ctx: BackupContext, volume: str, mode: str, entrypoint: str, *args: str) -> tuple[str, ...]:
    """Return the docker arguments of a throwaway helper container with volume at /volume."""
    return ("run", "--rm", "-i", "--network", "none", "-v", f"{volume}:/volume{mode}", "--entrypoint", entrypoint,
            ctx.helper_image, *args)  # fmt: skip


def _tar(ctx: BackupContext, volume: str, mode: str, *args: str) -> Command:
    return Command((*ctx.docker, *_helper(ctx, volume, mode, "tar", "-C", "/volume", *args)))


def backup(ctx: BackupContext, emit: Emit) -> None:
    for volume in volumes(ctx):
        emit(f"{volume}.tar", _tar(ctx, volume, ":ro", "--numeric-owner", "-cf", "-", "."), {"volume": volume})


def restore(ctx: BackupContext, entry: Entry, into: str, feed: Feed) -> str:
    """Restore one volume archive into <volume>-restored (scratch) or over the volume itself (live).

    Raise ConfigError if a running container uses the volume, or if a live
    restore would have to create a volume that is not one of this compose
    project's (named <project>_<volume>).
    """
    volume = entry.meta["volume"] + ("-restored" if into == "scratch" else "")
    users = _docker(ctx, "ps", "-q", "--filter", f"volume={volume}")
    if users:
        raise ConfigError(f"volume {volume} is in use by running container(s) {users.split()}: stop them first")
    if into == "scratch":  # a copy beside the project's volumes: no compose labels, so no backup takes it
        _docker(ctx, "volume", "rm", "-f", volume)
        _docker(ctx, "volume", "create", volume)
        feed(_tar(ctx, volume, "", "--numeric-owner", "-xpf", "-"))
        return f"volume {entry.meta['volume']} restored into {volume}"
    created = ""
    if not _exists(ctx, volume):
        prefix = f"{ctx.compose_project}_"
        if not volume.startswith(prefix):
            raise ConfigError(
                f"volume {volume} does not exist and is not named {prefix}<volume> (COMPOSE_PROJECT_NAME is "
                f"{ctx.compose_project!r}): create it with `docker compose up --no-start`, or restore --into scratch"
            )
        labels = (f"{PROJECT_LABEL}={ctx.compose_project}", f"{VOLUME_LABEL}={volume.removeprefix(prefix)}")
        _docker(ctx, "volume", "create", "--label", labels[0], "--label", labels[1], volume)
        created = " (created with compose's labels)"
    staging = f".ops-restore-{uuid.uuid4().hex[:12]}"
    unpack = 'mkdir "/volume/$1" && exec tar -C "/volume/$1" --numeric-owner -xpf -'
    try:
        feed(Command((*ctx.docker, *_helper(ctx, volume, "", "sh", "-c", unpack, "unpack", staging))))
    except BaseException:
        _docker(ctx, *_helper(ctx, volume, "", "rm", "-rf", f"/volume/{staging}"))
        raise  # the volume's own files were not touched
    _docker(ctx, *_helper(ctx, volume, "", "sh", "-c", SWAP, "swap", staging))
    return f"volume {volume} replaced by the backup's files{created}"
