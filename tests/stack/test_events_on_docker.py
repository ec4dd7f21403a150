"""Slices 7 to 9 through the slice engine on Docker: Redis in the stack, the observer as its compose service."""

from __future__ import annotations

import subprocess

import pytest

from ops.slices import engine
from tests.stack.conftest import StackProject

pytestmark = pytest.mark.stack


def test_event_slices_apply_and_verify_with_the_observer_service(stack_project: StackProject) -> None:
    truth = stack_project.dir / "truth"
    subprocess.run(["git", "init", "-q", "-b", "main", str(truth)], check=True)
    subprocess.run(["git", "-C", str(truth), "-c", "user.name=h", "-c", "user.email=h@example.com", "commit", "-q",
                    "--allow-empty", "-m", "start"], check=True)  # fmt: skip
    (stack_project.dir / "docs").mkdir()
    (stack_project.dir / "docs" / "EVENT_SCHEMA.md").write_text("# events\n")
    with (stack_project.dir / "vps.env").open("a") as env:
        env.write("OPS_EVENTS_REMOTE=\n")  # commit only: pushing is covered by the integration tests
    assert "events" not in stack_project.settings.profiles  # as a fresh vps.env has it: the observer's profile off
    runtime = engine.Runtime.for_settings(stack_project.settings)

    for number in (7, 8, 9):
        applied = engine.run_apply(runtime, number)
        assert applied.outcome in ("ok", "unchanged"), (number, [c.to_dict() for c in applied.checks])
        if number == 7:  # the truth repository exists: slice 7 turned the observer's profile on for slices 8-9
            assert "vps.env: COMPOSE_PROFILES=events" in applied.changed
            assert stack_project.settings.profiles == ("events",)
    log = subprocess.run(["git", "-C", str(truth), "log", "--format=%s%n%b"], capture_output=True, text=True, check=True).stdout
    assert "probe_written: /notes/ops-slice-9-probe.md" in log and "Event-Id: evt_" in log
    # the observer's state is the project's directory on the host: `ops cr list` there sees its decisions
    assert any((stack_project.dir / ".ops" / "events" / "change-requests").glob("cr_evt_*.json"))
    assert (stack_project.dir / ".ops" / "events" / "events.jsonl").stat().st_size > 0
