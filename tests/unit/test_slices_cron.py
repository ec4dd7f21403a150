"""Slices 10 and 11's cron jobs (ops/slices/cron.py): they run as the project's owner, never as root over code another
user can change; a job user other than root must reach Docker and write the jobs' lock, log and state. The project
is chowned to nobody (uid 65534, whose primary group nogroup stands for the docker group where a test needs a
user in it), so these tests need root."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from ops.config import Settings, load_settings
from ops.errors import ConfigError
from ops.slices import slice_10
from ops.slices.base import Target
from ops.slices.cron import cron_job, path_fix
from tests.conftest import require

NOBODY, NOGROUP = 65534, 65534
JOBS = ("backup run --schedule daily", "backup run --schedule weekly", "backup prune")  # the drill: off the VM


@pytest.fixture(autouse=True)
def as_root() -> None:
    require(os.geteuid() == 0, "root (the tests chown files to nobody)")


def settings_of(project: Path, tmp_path: Path) -> Settings:
    (project / "vps.env").write_text(
        f"OPS_BACKUP_CRON_FILE={tmp_path / 'cron.d' / 'aistack-backups'}\n"
        f"OPS_BACKUP_LOCK={tmp_path / 'run' / 'backup.lock'}\nOPS_BACKUP_LOG={tmp_path / 'log' / 'backup.log'}\n"
    )
    (tmp_path / "log").mkdir(exist_ok=True)
    return load_settings(project)


def users(text: str) -> list[str]:
    return [cron_job(text, job)[1] for job in JOBS]


def test_the_jobs_run_as_the_projects_owner_whatever_the_template_says(project: Path, tmp_path: Path) -> None:
    settings = settings_of(project, tmp_path)
    as_root = slice_10.render(settings)
    assert users(as_root) == ["root"] * 3  # a project that is root's
    os.chown(project, NOBODY, NOGROUP)
    rendered = slice_10.render(settings)
    assert users(rendered) == ["nobody"] * 3
    assert rendered == as_root.replace("   root ", "   nobody ")  # the user column alone, the spacing kept


def test_a_job_user_who_cannot_reach_docker_is_refused(project: Path, tmp_path: Path) -> None:
    settings = settings_of(project, tmp_path)
    os.chown(project, NOBODY, NOGROUP)
    with pytest.raises(ConfigError, match=re.escape(
        f"cron would run aistack-backups's jobs as nobody (the owner of {project}), who cannot reach Docker "
        "(not in group docker): `sudo usermod -aG docker nobody`"
    )):  # fmt: skip
        slice_10.install(settings)
    assert not slice_10.cron_file(settings).exists()


def test_a_job_user_must_write_the_lock_and_the_log_and_is_told_how(project: Path, tmp_path: Path) -> None:
    settings = settings_of(project, tmp_path)
    os.chown(project, NOBODY, NOGROUP)
    cron = replace(slice_10.CRON, docker_group="nogroup")
    lock_dir, log = tmp_path / "run", tmp_path / "log" / "backup.log"
    with pytest.raises(ConfigError, match=re.escape(
        f"cron would run aistack-backups's jobs as nobody (the owner of {project}), who cannot write {lock_dir}; "
        f"{log}: `sudo install -d -o nobody -g nogroup -m 750 {lock_dir} && sudo install -o nobody -g nogroup -m 640 "
        f"/dev/null {log}`, or set OPS_BACKUP_LOCK, OPS_BACKUP_LOG in vps.env to files nobody can write"
    )):  # fmt: skip
        cron.install(settings)
    assert not slice_10.cron_file(settings).exists()
    lock_dir.mkdir()  # what the commands do
    log.touch()
    for made in (lock_dir, log):
        os.chown(made, NOBODY, NOGROUP)
    assert cron.install(settings) == [f"installed {slice_10.cron_file(settings)}"]
    assert users(slice_10.cron_file(settings).read_text()) == ["nobody"] * 3


def _symlinked_log(path: Path) -> None:
    path.parent.mkdir()
    path.symlink_to("/etc/shadow")


def _owned_log(f: Path) -> None:
    f.parent.mkdir()
    f.touch()
    os.chown(f, NOBODY, NOGROUP)


def _state_in_aistack(f: Path) -> None:
    f.parent.mkdir()
    f.write_text("{}")
    os.chown(f, NOBODY, NOGROUP)


def _directory_of_nobody(f: Path) -> None:
    f.parent.mkdir()
    os.chown(f.parent, NOBODY, NOGROUP)


def _root_log(f: Path) -> None:
    f.parent.mkdir()
    f.touch()


def _sticky(f: Path) -> None:
    f.parent.mkdir()
    f.parent.chmod(0o1777)


INSTALL = "sudo install -o nobody -g nogroup -m 640 /dev/null {f}"
CHOWN = "sudo chown nobody:nogroup"
PATH_CASES: list[tuple[str, str, Callable[[Path], None], bool, str | None]] = [
    # (case, file under tmp_path, setup, appended, "what|command" with {d} the file's directory, {f} the file)
    ("a log of nobody's in a directory of root's", "log/a.log", _owned_log, True, None),
    ("a missing log in a directory of root's", "log/a.log", lambda f: f.parent.mkdir(), True, "{f}|" + INSTALL),
    ("a log of root's", "log/a.log", _root_log, True, "{f}|" + CHOWN + " {f}"),
    ("a log that is a symlink: chown would follow it", "log/a.log", _symlinked_log, True, "{f} (a symlink)|"),
    ("a missing directory", "aistack/s.json", lambda f: None, False, "{d}|sudo install -d -o nobody -g nogroup -m 750 {d}"),
    (
        "state in an aistack directory of root's",
        "aistack/s.json",
        _state_in_aistack,
        False,
        "the directory {d}|" + CHOWN + " {d}",
    ),
    ("state in a directory not to give away", "lib/s.json", lambda f: f.parent.mkdir(), False, "the directory {d}|"),
    ("state in a directory of nobody's", "lib/s.json", _directory_of_nobody, False, None),
    ("a lock in a sticky directory anyone writes (/run/lock)", "lock/a.lock", _sticky, False, None),
]


@pytest.mark.parametrize(("case", "name", "setup", "appended", "wanted"), PATH_CASES, ids=[c[0] for c in PATH_CASES])
def test_what_a_job_user_cannot_write_and_the_command_that_lets_them(
    tmp_path: Path, case: str, name: str, setup: Callable[[Path], None], appended: bool, wanted: str | None
) -> None:
    import pwd

    path = tmp_path / name
    setup(path)
    expected = None if wanted is None else tuple(wanted.format(f=path, d=path.parent).split("|"))
    assert path_fix(path, pwd.getpwuid(NOBODY), appended, project=tmp_path / "project") == expected


def _venv(project: Path) -> Path:
    (project / ".venv" / "bin").mkdir(parents=True)
    (project / ".venv" / "lib").mkdir()
    (project / ".venv" / "bin" / "ops").write_text("#!/bin/sh\n")
    return project / ".venv"


def _elsewhere(project: Path) -> Path:
    venv = project.parent / "venv-of-nobody"
    venv.mkdir()
    os.chown(venv, NOBODY, NOGROUP)
    (project / ".venv").symlink_to(venv)
    return venv


def _world_writable(project: Path) -> Path:
    (_venv(project) / "lib").chmod(0o777)
    return project / ".venv" / "lib"


def _owned_by_nobody(project: Path) -> Path:
    os.chown(_venv(project) / "bin" / "ops", NOBODY, NOGROUP)
    return project / ".venv" / "bin" / "ops"


def _group_writable(project: Path) -> Path:
    os.chown(_venv(project) / "lib", 0, NOGROUP)
    (project / ".venv" / "lib").chmod(0o775)
    return project / ".venv" / "lib"


def _template_of_nobody(project: Path) -> Path:
    os.chown(project / "backups" / "crontab", NOBODY, NOGROUP)  # its jobs' commands come from there
    return project / "backups" / "crontab"


def _open_project(project: Path) -> Path:
    project.chmod(0o777)  # anyone could swap .venv
    return project


UNSAFE: list[tuple[str, Callable[[Path], Path]]] = [
    # (what another user can do, a setup returning the path the error names)
    ("is writable by everyone (mode 777)", _world_writable),
    ("belongs to nobody", _owned_by_nobody),
    ("is writable by group nogroup (", _group_writable),  # nobody among its members
    ("belongs to nobody", _template_of_nobody),
    ("belongs to nobody", _elsewhere),  # the venv a symlink to another user's directory
    ("is writable by everyone (mode 777)", _open_project),
]


@pytest.mark.parametrize(("why", "setup"), UNSAFE, ids=[f"{i}-{u[0]}" for i, u in enumerate(UNSAFE)])
def test_a_root_job_refuses_code_another_user_can_change(
    project: Path, tmp_path: Path, why: str, setup: Callable[[Path], Path]
) -> None:
    settings = settings_of(project, tmp_path)
    named = setup(project)
    with pytest.raises(ConfigError) as refused:
        slice_10.install(settings)
    said = str(refused.value)
    assert said.startswith(
        f"cron would run aistack-backups's jobs as root (the owner of {project}) with code others can change: {named} {why}"
    )
    assert "Whoever can change it runs as root at the next job: make it root's and not writable by group or others" in said
    assert not slice_10.cron_file(settings).exists()


def test_a_root_job_installs_over_code_only_root_changes_with_a_sticky_tmp_on_the_way(project: Path, tmp_path: Path) -> None:
    settings = settings_of(project, tmp_path)
    assert str(project).startswith("/tmp/")  # /tmp: mode 1777, on the way to the project
    venv = _venv(project)
    os.chown(venv / "lib", 0, 0)
    (venv / "lib").chmod(0o775)  # group root: nobody else in it
    (venv / "bin" / "python3").symlink_to(shutil.which("sh") or "/bin/sh")  # a venv's interpreter lives elsewhere
    assert slice_10.install(settings) == [f"installed {slice_10.cron_file(settings)}"]


def test_slice_10_verify_says_when_the_installed_jobs_differ(project: Path, tmp_path: Path) -> None:
    settings = settings_of(project, tmp_path)
    target = slice_10.cron_file(settings)
    target.parent.mkdir()
    target.write_text(slice_10.render(settings).replace("0  2  *", "0  3  *"))  # edited by hand
    checks = slice_10.verify(Target("http://127.0.0.1:9", "sk-x", "http://127.0.0.1:9", "pk", "sk", settings=settings))
    assert (checks[0].name, checks[0].ok) == ("jobs installed", False)
    assert checks[0].detail == f"{target} differs from backups/crontab: run the slice's apply again"
