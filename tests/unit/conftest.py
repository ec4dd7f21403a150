"""The unit tier: decisions on data, on a laptop with nothing installed (docs/TESTING.md).

A unit test starts no program: no docker compose, caddy, git, node, Postgres,
Redis or `python -m ops.cli` (the CLI runs in-process, tests/unit/cli.py).
Every way of starting one fails the test at once, naming the program; a test
that needs a real program belongs to tests/integration.

bcrypt hashes cost 4 here instead of the generated BASIC_AUTH_HASH's 12:
the same algorithm, 250 times cheaper, so the doctor and secrets tests do not
spend the tier's time hashing. `test_secrets.py` checks the shipped cost with
the real one.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import Any

import bcrypt
import pytest

REAL_GENSALT = bcrypt.gensalt


class StartedAProgram(AssertionError):
    """A unit test started a program: it belongs to tests/integration."""


def _refuse(how: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        what = args[0] if args else kwargs.get("args", kwargs)
        raise StartedAProgram(
            f"a unit test started a program ({how} {what!r}): run it in tests/integration, or test the decision "
            "on data (docs/TESTING.md, 'The unit tier')"
        )

    return refuse


@pytest.fixture(autouse=True)
def no_programs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way of starting a program fail the test naming it (subprocess, os.system, spawn, fork, exec)."""
    monkeypatch.setattr(subprocess, "Popen", _refuse("subprocess.Popen"))
    for name in ("system", "popen", "posix_spawn", "posix_spawnp", "fork", "forkpty", "execv", "execve", "execvp"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _refuse(f"os.{name}"))


@pytest.fixture(autouse=True)
def cheap_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash with bcrypt's lowest cost (4): generated secrets and the secrets rule's check stay real, and fast."""
    monkeypatch.setattr(bcrypt, "gensalt", lambda rounds=12, prefix=b"2b": REAL_GENSALT(4, prefix))
