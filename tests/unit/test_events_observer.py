"""ops.events.observer: the observer's decision on each event, before anything is written to git.

First the path (``target_path``): an unsafe resource is rejected. Then
``decide``: held (pending) on a version conflict, when the agent asked, when
it deletes, or outside the auto-approved roots; approved otherwise. The same
events against a real Redis and git are in tests/integration/test_events.py.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from ops.events.observer import Policy, decide
from ops.events.reconciler import UnsafePath, target_path
from ops.events.schema import Event, parse_event
from tests.unit.test_events_schema import VALID

AUTO = "tasks, notes, projects, memory"


def event(version: int = 1, resource: str = "/tasks/task-456", action: str = "task_created", ask: bool = False) -> Event:
    raw = {
        **VALID,
        "version": version,
        "payload": {**VALID["payload"], "resource": resource, "action": action},
        "metadata": {**VALID["metadata"], "approval_required": ask},
    }
    return parse_event(raw)


# case -> (event, version applied to git for its aggregate, (status, reason))
DECISIONS: dict[str, tuple[Event, int, tuple[str, str]]] = {
    "the next version of a task": (event(1), 0, ("approved", "low risk: auto-approved")),
    "the next version after many": (event(8, "/notes/n.md"), 7, ("approved", "low risk: auto-approved")),
    "each auto-approved root: projects": (event(1, "/projects/p"), 0, ("approved", "low risk: auto-approved")),
    "each auto-approved root: memory": (event(1, "/memory/m"), 0, ("approved", "low risk: auto-approved")),
    "a resource without the leading slash": (event(1, "tasks/t"), 0, ("approved", "low risk: auto-approved")),
    "a version ahead of git": (
        event(3),
        1,
        ("pending", "version conflict: the event is version 3, git has project:life-os at 1"),
    ),
    "a version git already has (a replay)": (
        event(2),
        2,
        ("pending", "version conflict: the event is version 2, git has project:life-os at 2"),
    ),
    "a version behind git": (event(1), 5, ("pending", "version conflict: the event is version 1, git has project:life-os at 5")),
    "the agent asked": (event(1, ask=True), 0, ("pending", "the agent asked for approval")),
    "a *_deleted action": (event(1, action="task_deleted"), 0, ("pending", "it deletes a file")),
    "the delete action": (event(1, action="delete"), 0, ("pending", "it deletes a file")),
    "undelete is not a delete": (event(1, action="undelete"), 0, ("approved", "low risk: auto-approved")),
    "deleted_at is not a delete": (event(1, action="deleted_at_set"), 0, ("approved", "low risk: auto-approved")),
    "workflows need approval": (
        event(1, "/workflows/router"),
        0,
        ("pending", f"workflows/ changes need approval (auto-approved: {AUTO})"),
    ),
    "config needs approval": (
        event(1, "/config/x.yaml"),
        0,
        ("pending", f"config/ changes need approval (auto-approved: {AUTO})"),
    ),
    "a root that only starts like one": (
        event(1, "/tasksx/t"),
        0,
        ("pending", f"tasksx/ changes need approval (auto-approved: {AUTO})"),
    ),
    # precedence: a conflict first, then the agent's ask, then a delete, then the root
    "a conflict that also asks": (
        event(4, ask=True),
        0,
        ("pending", "version conflict: the event is version 4, git has project:life-os at 0"),
    ),
    "an ask that also deletes": (event(1, action="task_deleted", ask=True), 0, ("pending", "the agent asked for approval")),
    "a delete under workflows": (event(1, "/workflows/w", action="delete"), 0, ("pending", "it deletes a file")),
}


@pytest.mark.parametrize("case", sorted(DECISIONS))
def test_the_observer_decides_each_event(case: str) -> None:
    change, applied, expected = DECISIONS[case]
    assert decide(change, applied, Policy()) == expected


def test_the_policy_sets_what_is_auto_approved() -> None:
    policy = Policy(auto_roots=("workflows",))
    assert decide(event(1, "/workflows/router"), 0, policy) == ("approved", "low risk: auto-approved")
    assert decide(event(1, "/tasks/t"), 0, policy) == ("pending", "tasks/ changes need approval (auto-approved: workflows)")


ROOTS = Policy().roots


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        ("/tasks/task-456", "tasks/task-456.json"),  # no suffix: the data is written as JSON
        ("/notes/today.md", "notes/today.md"),
        ("tasks/a/b.txt", "tasks/a/b.txt"),
        ("/config/litellm.yaml", "config/litellm.yaml"),  # a root of the repository, held for approval by decide
        ("/memory/v1.2", "memory/v1.2"),
    ],
)
def test_a_safe_resource_maps_to_a_file_in_the_repository(tmp_path: Path, resource: str, path: str) -> None:
    assert target_path(tmp_path, resource, ROOTS) == PurePosixPath(path)


@pytest.mark.parametrize(
    ("resource", "why"),
    [
        ("/tasks\\x", "backslashes and NUL are not allowed"),
        ("/tasks/x\x00", "backslashes and NUL are not allowed"),
        ("//etc/passwd", "is an absolute path"),
        ("C:/tasks/x", "is an absolute path"),
        ("/tasks/../.git/config", "empty, '.' or '..' components are not allowed"),
        ("/tasks//x", "empty, '.' or '..' components are not allowed"),
        ("/tasks/./x", "empty, '.' or '..' components are not allowed"),
        ("/tasks/", "empty, '.' or '..' components are not allowed"),
        ("/.git/hooks/post-commit", "nothing under .git may be written"),
        ("/tasks/.gitattributes", "nothing under .git may be written"),
        ("/tasks/.GIT", "nothing under .git may be written"),
        ("/tasks/a b", "component 'a b' has characters outside [A-Za-z0-9._-]"),
        ("/tasks/-x", "component '-x' has characters outside [A-Za-z0-9._-]"),
        ("/etc/passwd", "is outside the allowed roots (tasks, notes, projects, memory, workflows, config)"),
        ("/tasks", "names a root, not a file in it"),
    ],
)
def test_an_unsafe_resource_is_rejected_naming_why(tmp_path: Path, resource: str, why: str) -> None:
    with pytest.raises(UnsafePath) as caught:
        target_path(tmp_path, resource, ROOTS)
    assert str(caught.value).startswith(f"resource {resource!r}")
    assert why in str(caught.value)


def test_a_symbolic_link_on_the_way_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "x.json").symlink_to(tmp_path / ".git" / "config")
    (tmp_path / "notes").symlink_to(tmp_path / "tasks")
    with pytest.raises(UnsafePath, match=r"^resource '/tasks/x': tasks/x.json is a symbolic link$"):
        target_path(tmp_path, "/tasks/x", ROOTS)
    with pytest.raises(UnsafePath, match=r"^resource '/notes/y.md': notes is a symbolic link$"):
        target_path(tmp_path, "/notes/y.md", ROOTS)
