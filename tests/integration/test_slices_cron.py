"""A slice's cron job run as cron runs it (ops/slices/cron.py run_as_cron): as the job's user, with that user's groups,
when ops runs as root, so slice 10 and 11's verify (run with sudo) write the jobs' log and state as the cron job will."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ops.config import load_settings
from ops.slices.cron import CronFile
from tests.conftest import require

pytestmark = pytest.mark.integration


def test_a_job_of_the_projects_owner_runs_as_them_with_their_groups(project: Path, tmp_path: Path) -> None:
    require(os.geteuid() == 0, "root (the job switches to nobody)")
    (project / "jobs").mkdir()
    (project / "jobs" / "crontab").write_text("SHELL=/bin/sh\n* * * * * root id -un; id -Gn\n")
    (project / "vps.env").write_text(f"OPS_JOBS_CRON_FILE={tmp_path / 'cron.d' / 'jobs'}\n")
    os.chown(project, 65534, 65534)  # nobody's
    cron = CronFile(Path("jobs/crontab"), "/etc/cron.d/jobs", "OPS_JOBS_CRON_FILE")
    assert cron.run_job(cron.render(load_settings(project)), "id -un") == (0, "nobody\nnogroup")
