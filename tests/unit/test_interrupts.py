"""A signal held back by shielded() is raised when the block ends, even when the block raised, and never later."""

from __future__ import annotations

import os
import signal

import pytest

from ops.errors import ServiceError
from ops.interrupts import Interrupted, shielded, signals_as_exceptions


def test_a_signal_held_during_a_block_that_raised_is_raised_chained_to_that_error() -> None:
    with signals_as_exceptions():
        with pytest.raises(Interrupted) as caught, shielded():
            os.kill(os.getpid(), signal.SIGHUP)  # the ssh session drops while pg_restore runs
            raise ServiceError("pg_restore failed: terminated by SIGHUP")
        assert caught.value.signum == signal.SIGHUP
        assert isinstance(caught.value.__cause__, ServiceError)  # what the block was doing is not lost
        steps = []
        with shielded():  # an unrelated later block: the signal was handed on once, nothing goes off here
            steps.append("journal written")
        assert steps == ["journal written"]


def test_a_block_that_raised_without_a_signal_keeps_its_own_error() -> None:
    with signals_as_exceptions(), pytest.raises(ServiceError, match="psql failed"), shielded():
        raise ServiceError("psql failed")


def test_a_signal_held_in_a_nested_shield_waits_for_the_outermost_one() -> None:
    steps = []
    with pytest.raises(Interrupted), signals_as_exceptions(), shielded():
        with pytest.raises(ValueError), shielded():
            os.kill(os.getpid(), signal.SIGTERM)
            raise ValueError("inner step failed")
        steps.append("outer cleanup went on")
    assert steps == ["outer cleanup went on"]
