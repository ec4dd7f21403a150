"""The unit tier's own rule (tests/unit/conftest.py): a unit test that starts a program fails, naming it."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.conftest import StartedAProgram


async def _spawn() -> None:
    await asyncio.create_subprocess_exec("docker", "compose", "version")


STARTS: dict[str, Callable[[], Any]] = {
    "subprocess.run": lambda: subprocess.run(["caddy", "validate"], check=False),
    "subprocess.check_output": lambda: subprocess.check_output(["git", "status"]),
    "subprocess.Popen": lambda: subprocess.Popen(["redis-server"]),
    "os.system": lambda: os.system("pg_ctl start"),
    "os.popen": lambda: os.popen("docker ps"),
    "asyncio": lambda: asyncio.run(_spawn()),
}


@pytest.mark.parametrize("how", sorted(STARTS))
def test_starting_a_program_fails_the_test_naming_it(how: str) -> None:
    with pytest.raises(StartedAProgram, match=r"a unit test started a program .*(caddy|git|redis|pg_ctl|docker)"):
        STARTS[how]()
