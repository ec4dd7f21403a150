"""The backup identity (age private key), given at run time: it stays off the VM.

``--identity FILE`` names the file; ``--identity -`` reads it from stdin once
(``ssh vm 'ops backup drill --identity -' < backup.key``) into a mode-600 file
in /dev/shm, memory not disk, removed when the command ends. age reads an
identity from a file for each object it decrypts, so a pipe would not do.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ops.errors import ConfigError

MARKER = b"AGE-SECRET-KEY-1"  # every age identity line starts so (source: FiloSottile/age, age-keygen output)
MAX_BYTES = 64 * 1024
SHM = Path("/dev/shm")


@contextlib.contextmanager
def identity_file(given: str, stdin: BinaryIO) -> Iterator[Path]:
    """Given --identity's value (a file, or "-" for stdin), yield the path of the identity file.

    Raise ConfigError if the file does not exist, or stdin holds no age identity.
    """
    if given != "-":
        path = Path(given).expanduser()
        if not path.is_file():
            raise ConfigError(f"--identity: {path} does not exist (the age identity file, age-keygen's output)")
        yield path
        return
    data = stdin.read(MAX_BYTES + 1)
    if MARKER not in data or len(data) > MAX_BYTES:
        raise ConfigError("--identity -: stdin holds no age identity (a line AGE-SECRET-KEY-1...)")
    where = SHM if SHM.is_dir() and os.access(SHM, os.W_OK) else None
    handle, name = tempfile.mkstemp(prefix="aistack-identity-", dir=where)  # mode 600
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)
