"""`ops slice` as a user runs it, in its own process: its runtime finds the real docker compose first.

The engine's decisions (which snapshot, what to prune, prerequisites) are in
tests/unit/test_slices_engine.py and tests/unit/test_journal_status.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ops import tools
from ops.config import Settings, load_settings
from ops.secrets import init_secrets
from tests.conftest import require
from tests.unit.test_slices_engine import make_snapshot

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(project: Path) -> Settings:
    settings = load_settings(project)
    init_secrets(settings.env_example, settings.env_file)
    return load_settings(project)


def test_cli_rollback_without_a_complete_snapshot_says_so_without_a_traceback(settings: Settings) -> None:
    require(tools.docker_compose(), "docker compose")
    make_snapshot(settings, "20261121T100000000000Z-slice01-apply", state=False)
    proc = subprocess.run(
        [sys.executable, "-m", "ops.cli", "slice", "1", "--rollback", "--yes", "--project-dir", str(settings.project_dir)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: slice 1 has no complete snapshot to roll back to"), proc.stderr
    assert "Traceback" not in proc.stderr
