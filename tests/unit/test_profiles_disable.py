"""`ops profile disable`: bad input is one line, and nothing changes (issue 13 item 5; Docker in tests/stack)."""

from __future__ import annotations

from pathlib import Path

from ops.config import load_settings
from ops.secrets import init_secrets
from tests.unit.cli import run_ops


def test_an_unknown_profile_is_one_line_and_changes_nothing(project: Path) -> None:
    settings = load_settings(project)
    init_secrets(settings.env_example, settings.env_file)
    before = settings.env_file.read_text()
    ran = run_ops("profile", "disable", "langfuze", "--project-dir", str(project))
    assert ran.returncode == 2
    assert ran.stderr == "error: no service has profile 'langfuze'; the stack's profiles are: events, langfuse\n"
    assert settings.env_file.read_text() == before
