"""The backup identity (age private key), given at run time: it stays off the VM.

``--identity FILE`` names the file; ``--identity -`` reads it from stdin once
(``ssh vm 'ops backup drill --identity -' < backup.key``) into a mode-600 file
in /dev/shm, memory not disk, removed when the command ends, also when
SIGTERM (a timeout, a shutdown) or SIGHUP (the ssh connection dropped) stops
it. age reads an identity from a file for each object it decrypts, so a pipe
would not do.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ops.errors import ConfigError, OpsError

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
    if not (SHM.is_dir() and os.access(SHM, os.W_OK)):  # never a disk: the identity stays off the VM
        raise ConfigError(f"--identity -: {SHM} is not a writable directory to keep the identity in memory")
    with _stopped_by_signals():
        handle, name = tempfile.mkstemp(prefix="aistack-identity-", dir=SHM)  # mode 600
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)


class Stopped(OpsError):
    """SIGTERM or SIGHUP stopped the command while it held the identity."""


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped(f"stopped by {signal.Signals(signum).name}; the identity's copy in {SHM} is removed")


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """While the block runs, turn SIGTERM and SIGHUP into an exception (their default kills without
    running finally blocks); a handler already set (ops backup's SIGTERM one raises too) is kept."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    for sig, handler in previous.items():
        if handler in (signal.SIG_DFL, None):
            signal.signal(sig, _raise_stopped)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
