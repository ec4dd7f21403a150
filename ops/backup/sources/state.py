"""The operator's state, the project's ``.ops/``: change requests, the slices' snapshots and applied files.

One tar of the directory, leaving out what is not state: ``.ops/restore``
(restores land there), unfinished snapshots (``*.partial``), lock files and
temporary files. A restore unpacks into ``.ops/restore/state-<run>`` (scratch)
or into the project (live), never overwriting a file that exists. Only the
archive's ``./.ops`` is unpacked: a tar planted in the bucket (age encrypts
to a public key) cannot add a vps.env or code to the project; GNU tar itself
refuses ``..`` in names and paths through the symlinks it unpacks.
"""

from __future__ import annotations

import logging

from ops.backup.context import BackupContext
from ops.backup.manifest import Entry
from ops.backup.pipeline import Command
from ops.backup.sources.base import Emit, Feed
from ops.errors import ConfigError

log = logging.getLogger("ops.backup")
NAME = "state"
SCHEDULE = "daily"
DIRECTORY = ".ops"
OBJECT = "ops.tar"
MEMBER = f"./{DIRECTORY}"  # what backup() archives, and all a restore unpacks
# GNU tar's --exclude matches any trailing part of a member's name (--no-anchored, its default)
EXCLUDE = (f"{DIRECTORY}/restore", "*.partial", "*.lock", "*.tmp")


def backup(ctx: BackupContext, emit: Emit) -> None:
    if not (ctx.project_dir / DIRECTORY).is_dir():
        log.warning("state source: %s does not exist yet; nothing to back up", ctx.project_dir / DIRECTORY)
        return
    excludes = [f"--exclude={pattern}" for pattern in EXCLUDE]
    emit(OBJECT, Command(("tar", "-C", str(ctx.project_dir), *excludes, "-cf", "-", MEMBER)), {"directory": DIRECTORY})


def restore(ctx: BackupContext, entry: Entry, into: str, feed: Feed) -> str:
    """Unpack .ops/ into .ops/restore/state-<run> (scratch) or into the project (live), keeping existing files."""
    if into == "scratch":
        run_id = entry.object.split("/")[-3]
        target = ctx.project_dir / DIRECTORY / "restore" / f"state-{run_id}"
        if target.exists():
            raise ConfigError(f"{target} exists already: remove it or pick another backup")
        target.mkdir(parents=True)
        feed(Command(("tar", "-C", str(target), "-xf", "-", MEMBER)))
        return f"{DIRECTORY}/ restored into {target}"
    feed(Command(("tar", "-C", str(ctx.project_dir), "--skip-old-files", "-xpf", "-", MEMBER)))
    return f"{DIRECTORY}/ restored into {ctx.project_dir} (existing files kept)"
