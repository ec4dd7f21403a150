"""The operator's state, the project's ``.ops/``: change requests, the slices' snapshots and applied files.

One tar of the directory, leaving out what is not state: ``.ops/restore``
(restores land there), unfinished snapshots (``*.partial``), lock files and
temporary files. A restore unpacks into ``.ops/restore/state-<run>`` (scratch)
or into the project (live), never overwriting a file that exists. Only the
archive's ``./.ops`` is unpacked: a tar planted in the bucket (age encrypts
to a public key) cannot add a vps.env or code to the project; GNU tar itself
refuses ``..`` in names and paths through the symlinks it unpacks; a symlink
the archive holds is removed after unpacking (``.ops`` has none of its own),
and ``.ops`` itself is made a real directory first, so a member ``./.ops ->
.`` cannot redirect the rest.

Left out always: ``.ops/upgrades`` (ops upgrade's local rollback copies: whole
database dumps and container settings, the data the postgres and volumes
sources already hold). Left out when backups are not encrypted: every copy of
``vps.env`` the slices and deploys keep (secrets are never stored in clear,
as the secrets source refuses to).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

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
EXCLUDE = (f"{DIRECTORY}/restore", f"{DIRECTORY}/upgrades", "*.partial", "*.lock", "*.tmp")
SECRET_FILES = ("vps.env", ".env")  # left out of an archive that is not encrypted


def backup(ctx: BackupContext, emit: Emit) -> None:
    if not (ctx.project_dir / DIRECTORY).is_dir():
        log.warning("state source: %s does not exist yet; nothing to back up", ctx.project_dir / DIRECTORY)
        return
    patterns = EXCLUDE if ctx.codec.encrypted else (*EXCLUDE, *SECRET_FILES)
    if not ctx.codec.encrypted:
        log.warning("state source: backups are not encrypted, so the copies of vps.env in .ops/ are left out")
    excludes = [f"--exclude={pattern}" for pattern in patterns]
    emit(OBJECT, Command(("tar", "-C", str(ctx.project_dir), *excludes, "-cf", "-", MEMBER)), {"directory": DIRECTORY})


def restore(ctx: BackupContext, entry: Entry, into: str, feed: Feed) -> str:
    """Unpack .ops/ into .ops/restore/state-<run> (scratch) or into the project (live), keeping existing files."""
    if into == "scratch":
        run_id = entry.object.split("/")[-3]
        target = ctx.project_dir / DIRECTORY / "restore" / f"state-{run_id}"
        if target.exists():
            raise ConfigError(f"{target} exists already: remove it or pick another backup")
        (target / DIRECTORY).mkdir(parents=True, mode=0o700)
        feed(Command(("tar", "-C", str(target), "--skip-old-files", "-xf", "-", MEMBER)))
        return f"{DIRECTORY}/ restored into {target}{_drop_links(target / DIRECTORY)}"
    live = ctx.project_dir / DIRECTORY
    if live.is_symlink():
        raise ConfigError(f"{live} is a symlink: the state is restored into a real directory only")
    live.mkdir(mode=0o700, exist_ok=True)  # so the archive's ./.ops member is skipped, never a link
    feed(Command(("tar", "-C", str(ctx.project_dir), "--skip-old-files", "-xpf", "-", MEMBER)))
    return f"{DIRECTORY}/ restored into {ctx.project_dir} (existing files kept){_drop_links(live)}"


def _drop_links(root: Path) -> str:
    """Remove every symlink under root (an archive's, pointing anywhere); return a note naming them, or ""."""
    links = [Path(d) / n for d, dirs, files in os.walk(root) for n in (*dirs, *files) if (Path(d) / n).is_symlink()]
    for link in links:
        link.unlink()
    if links:
        log.warning("state restore: removed symlinks the archive held: %s", ", ".join(map(str, links)))
    if not links:
        return ""
    return f"; removed {len(links)} symlink(s) the archive held: {', '.join(str(p.relative_to(root)) for p in links[:5])}"
