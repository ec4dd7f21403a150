"""SIGTERM, SIGHUP and SIGINT as an exception, so an operation's cleanup runs when it is told to stop.

Python's default for SIGTERM and SIGHUP (a dropped ssh session) ends the
process on the spot: no ``finally`` runs, so the operator lock stays held,
the journal row stays ``running`` and a drill's broken key stays in
production. Inside ``signals_as_exceptions()`` the first of these signals
raises Interrupted in the main thread instead; later ones are ignored while
the process unwinds, and cleanup wrapped in ``shielded()`` finishes before a
signal that arrives during it is raised. A signal that was ignored when the
block started (``nohup``) stays ignored.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

SIGNALS: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class Interrupted(BaseException):
    """The process was told to stop (SIGTERM, SIGHUP or SIGINT). Not an Exception: cleanup handlers let it through."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


@dataclass
class _State:
    installed: int = 0  # nesting depth of signals_as_exceptions
    shield: int = 0  # nesting depth of shielded
    pending: int | None = None  # a signal received while shielded
    raised: bool = False  # Interrupted was raised once: the process is unwinding
    previous: dict[int, Any] = field(default_factory=dict)


_state = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.raised:
        return
    if _state.shield:
        _state.pending = _state.pending or signum
        return
    _state.raised = True
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """Within the block, raise Interrupted on SIGTERM, SIGHUP or SIGINT; restore the previous handlers after.

    A no-op off the main thread (only it can handle signals) and when already inside such a block.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _state.installed:  # nested: the outer block's handlers stay
        _state.installed += 1
        try:
            yield
        finally:
            _state.installed -= 1
        return
    _state.installed, _state.raised, _state.pending = 1, False, None
    for signum in SIGNALS:
        current = signal.getsignal(signum)
        if current == signal.SIG_IGN:  # started under nohup (or told to ignore it): keep that choice
            continue
        _state.previous[signum] = current
        signal.signal(signum, _handler)
    try:
        yield
    finally:
        for signum, previous in _state.previous.items():
            signal.signal(signum, previous)
        _state.previous.clear()
        _state.installed, _state.pending = 0, None


def _take_pending() -> int | None:
    """Leaving the outermost shield: return the signal it held back (once), or None; nothing stays pending."""
    if _state.shield or _state.pending is None:
        return None
    signum, _state.pending = _state.pending, None
    if _state.raised:  # already unwinding from an earlier signal: this one adds nothing
        return None
    _state.raised = True
    return signum


def in_shield() -> bool:
    """Return whether a shielded() block runs: the programs it starts get a session of their own.

    A terminal's Ctrl-C and a dropped ssh's SIGHUP go to the whole process group; a rollback's
    pg_restore or `docker compose up` killed by them halfway would leave the data dropped and not
    restored. In a new session they finish, and the shield raises the signal after.
    """
    return _state.shield > 0


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Let the block finish (restoring a key, releasing a lock); raise a signal received meanwhile at its end.

    If the block raised, the held-back signal is raised as Interrupted chained to the block's
    error (``__cause__``), never left pending to go off later somewhere unrelated.
    """
    _state.shield += 1
    try:
        yield
    except BaseException as exc:
        _state.shield -= 1
        signum = _take_pending()
        if signum is not None:
            raise Interrupted(signum) from exc
        raise
    _state.shield -= 1
    signum = _take_pending()
    if signum is not None:
        raise Interrupted(signum)
