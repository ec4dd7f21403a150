"""vps.env, the stack's secrets: stored only encrypted (age), with the fingerprints of its encryption keys.

Without the old N8N_ENCRYPTION_KEY, LITELLM_SALT_KEY and LANGFUSE_ENCRYPTION_KEY
the restored data cannot be decrypted, so the file travels with the data. It
is never stored in clear: without OPS_BACKUP_AGE_RECIPIENTS this source refuses
(a scheduled run leaves it out and says so). The entry's meta carries the keys'
fingerprints (ops.keyguard), which ``ops recover`` checks before it touches anything.
A restore writes ``.ops/restore/vps.env-<run>`` (scratch) or ``vps.env`` itself
(live) when there is none; an existing vps.env is never overwritten.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from ops import keyguard
from ops.backup.context import BackupContext
from ops.backup.manifest import Entry
from ops.backup.pipeline import CHUNK, Command
from ops.backup.sources.base import Emit, Feed
from ops.config import ENV_FILE
from ops.envfile import parse_env_text
from ops.errors import ConfigError

log = logging.getLogger("ops.backup")
NAME = "secrets"
SCHEDULE = "daily"
OBJECT = ENV_FILE


class Unencrypted(ConfigError):
    """vps.env would have been stored in clear."""


def refusal() -> Unencrypted:
    return Unencrypted(
        "vps.env is not backed up: backups are not encrypted and its secrets are never stored in clear;"
        " set OPS_BACKUP_AGE_RECIPIENTS (age-keygen, docs/BACKUPS.md)"
    )


def backup(ctx: BackupContext, emit: Emit) -> None:
    if not ctx.codec.encrypted:
        raise refusal()
    path = ctx.project_dir / ENV_FILE
    if not path.is_file():
        log.warning("secrets source: %s does not exist; nothing to back up", path)
        return

    def read(path: Path = path) -> Iterator[bytes]:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk

    env = parse_env_text(path.read_text(encoding="utf-8"), ENV_FILE)
    emit(OBJECT, read, {"file": ENV_FILE, "keys": keyguard.fingerprints(env)})


def _private_target(directory: Path) -> Path:
    """Return a new empty file of mode 600 in directory (the decrypted secrets go there, never wider)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f".{ENV_FILE}.restoring-{uuid.uuid4().hex[:12]}"
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return path


def decrypt_to(feed: Feed, directory: Path) -> Path:
    """Stream the entry's plain bytes into a new mode-600 file in directory; return it (the caller moves it)."""
    target = _private_target(directory)
    try:
        feed(Command(("dd", f"of={target}", "bs=1M", "status=none")))  # dd truncates, keeping the file's mode
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def restore(ctx: BackupContext, entry: Entry, into: str, feed: Feed) -> str:
    """Restore vps.env into .ops/restore/vps.env-<run> (scratch) or as vps.env when there is none (live).

    Raise KeyMismatch if a vps.env exists with other encryption keys than the backup's,
    ConfigError if it exists and differs otherwise (it is kept either way).
    """
    run_id = entry.object.split("/")[-3]
    if into == "scratch":
        target = ctx.project_dir / ".ops" / "restore" / f"{ENV_FILE}-{run_id}"
        if target.exists():
            raise ConfigError(f"{target} exists already: remove it or pick another backup")
        decrypt_to(feed, target.parent).rename(target)
        return f"vps.env restored as {target} (mode 600)"
    live = ctx.project_dir / ENV_FILE
    if live.exists():
        keyguard.check(entry.meta.get("keys", {}), parse_env_text(live.read_text(encoding="utf-8"), ENV_FILE), f"backup {run_id}")
        staged = decrypt_to(feed, ctx.project_dir)
        try:
            if staged.read_bytes() != live.read_bytes():
                raise ConfigError(
                    f"{live} exists and differs from backup {run_id}'s (its encryption keys are the same): kept;"
                    " move it away to restore the backup's"
                )
        finally:
            staged.unlink(missing_ok=True)
        return f"vps.env already in place (same as backup {run_id}'s)"
    decrypt_to(feed, ctx.project_dir).rename(live)
    return f"vps.env restored from backup {run_id} (mode 600)"
