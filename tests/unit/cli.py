"""`ops` run in-process for the unit tier: click's CliRunner instead of `python -m ops.cli` in a new process."""

from __future__ import annotations

from dataclasses import dataclass

from click.testing import CliRunner

from ops.cli import main


@dataclass(frozen=True)
class Ran:
    """What a command did: its exit code, what it printed on stdout and on stderr."""

    returncode: int
    stdout: str
    stderr: str


def run_ops(*args: str) -> Ran:
    """Given the arguments after `ops`, run the command in this process and return its exit code and output.

    An exception the CLI let through (a traceback for the user) fails the calling test, naming it.
    """
    result = CliRunner().invoke(main, list(args), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"`ops {' '.join(args)}` raised instead of exiting: {result.exception!r}") from result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)
