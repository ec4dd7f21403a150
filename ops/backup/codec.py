"""Encoding backups: zstd compression, then age encryption when recipients are configured.

Given the backup settings, return the filter stages that turn a plain stream
into what the bucket stores, and back. age keeps the bucket free of
plaintext: the VM holds only the public recipients; the identity (private
key) that decrypts is needed only to restore, verify in depth, or drill.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ops.backup.pipeline import Command
from ops.errors import ConfigError

AGE_RECIPIENT = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")


@dataclass(frozen=True)
class Codec:
    zstd_level: int = 3
    recipients: tuple[str, ...] = ()
    identity: Path | None = None

    def __post_init__(self) -> None:
        for recipient in self.recipients:
            if not AGE_RECIPIENT.match(recipient):
                raise ConfigError(f"OPS_BACKUP_AGE_RECIPIENTS: {recipient!r} is not an age public key (age1...)")
        if not 1 <= self.zstd_level <= 19:
            raise ConfigError(f"OPS_BACKUP_ZSTD_LEVEL must be 1 to 19, got {self.zstd_level}")

    @property
    def encrypted(self) -> bool:
        return bool(self.recipients)

    @property
    def suffix(self) -> str:
        return ".zst.age" if self.encrypted else ".zst"

    def encode(self) -> list[Command]:
        """Return the stages from plain bytes to stored bytes."""
        stages = [Command((_tool("zstd"), "-q", f"-{self.zstd_level}", "-T0", "-c"))]
        if self.recipients:
            stages.append(Command((_tool("age"), *[a for r in self.recipients for a in ("-r", r)])))
        return stages

    def decode(self, encrypted: bool) -> list[Command]:
        """Return the stages from stored bytes to plain bytes. Raise ConfigError if they need an identity we lack."""
        stages = []
        if encrypted:
            if self.identity is None:
                raise ConfigError(
                    "this backup is encrypted: give its age identity at run time with --identity FILE (- reads stdin;"
                    " off the VM you may set OPS_BACKUP_AGE_IDENTITY instead), see docs/BACKUPS.md"
                )
            if not self.identity.is_file():
                raise ConfigError(f"the age identity {self.identity} does not exist (--identity or OPS_BACKUP_AGE_IDENTITY)")
            stages.append(Command((_tool("age"), "-d", "-i", str(self.identity))))
        stages.append(Command((_tool("zstd"), "-q", "-d", "-c")))
        return stages


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise ConfigError(f"{name} is not installed (apt-get install {name}); backups need it")
    return found


def tool_version(argv: list[str]) -> str:
    """Return the first line a program prints for its version, or 'unknown'."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return ((proc.stdout or proc.stderr).strip().splitlines() or ["unknown"])[0]
