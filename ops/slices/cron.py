"""A cron.d file a slice installs from a template in the project, and its jobs run the way cron runs them.

Slice 10 installs backups/crontab as /etc/cron.d/aistack-backups, slice 11
alerts/crontab as /etc/cron.d/aistack-alerts: the same steps, so one class.
The template's OPS_PROJECT_DIR line is set to the project's directory, and
the variables it names (a lock, a log, a state file) to vps.env's values when
set there (tests point them into a temp dir).

The jobs run as the project directory's owner, whatever the template says:
cron runs "$OPS_PROJECT_DIR/.venv/bin/ops", code its owner can change, so a
root job would give root to whoever can write the project (the operator, and
the coding agent's shell running as them). Install refuses, saying what to
do, when someone else than that user (and root) can change the code the jobs
run (the project's directory and those above it, the template, the venv, the
ops package), when a job user other than root cannot reach Docker, or cannot
write the jobs' lock, log or state.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ops
from ops.config import Settings
from ops.errors import ConfigError

ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
DOCKER_GROUP = "docker"  # the Docker engine's socket is root:docker (Debian's docker.io)
VENV = ".venv"  # the jobs run "$OPS_PROJECT_DIR/.venv/bin/ops"
SHOWN = 3  # problems named in an error


@dataclass(frozen=True)
class CronFile:
    """A template in the project (relative path), where it is installed, and what install fills in."""

    template: Path
    default_target: str  # /etc/cron.d/<name>
    target_variable: str  # the vps.env variable that moves it (tests)
    rendered: tuple[str, ...] = ()  # crontab variables a project may set in vps.env
    log_variable: str = ""  # the crontab variable naming the log its jobs append to
    docker_group: str = DOCKER_GROUP  # a job user other than root must be in it (the jobs use Docker)

    def job_user(self, settings: Settings) -> pwd.struct_passwd:
        """Given Settings, return the account the jobs run as: the project directory's owner.

        Raise ConfigError if that owner has no account.
        """
        uid = settings.project_dir.stat().st_uid
        try:
            return pwd.getpwuid(uid)
        except KeyError:
            raise ConfigError(
                f"{settings.project_dir} belongs to uid {uid}, which has no account, and cron runs the jobs as the "
                f"project's owner: `sudo chown -R <operator>: {settings.project_dir}`"
            ) from None

    def target(self, settings: Settings) -> Path:
        """Given Settings, return where the file is installed."""
        return Path(settings.effective_env.get(self.target_variable) or self.default_target)

    def render(self, settings: Settings) -> str:
        """Given Settings, return the template with OPS_PROJECT_DIR (and the rendered variables set in vps.env) filled in,
        every job run as the project's owner. Raise ConfigError if that owner has no account."""
        text = (settings.project_dir / self.template).read_text()
        values = {"OPS_PROJECT_DIR": str(settings.project_dir)}
        values.update({name: settings.effective_env[name] for name in self.rendered if settings.effective_env.get(name)})
        for name, value in values.items():
            text = re.sub(rf"(?m)^{name}=.*$", f"{name}={value}".replace("\\", "\\\\"), text)
        return with_user(text, self.job_user(settings).pw_name)

    def check_safe(self, settings: Settings, text: str) -> None:
        """Given Settings and the rendered file, return if its jobs can run safely as the project's owner.

        Raise ConfigError saying what to do if anyone but that user and root can change the code the jobs run
        (the project's directory and those above it, the template, the venv, the ops package), or, for a user
        other than root, if they cannot reach Docker or write the jobs' lock, log and state.
        """
        user, project = self.job_user(settings), settings.project_dir
        who = f"{self.target(settings).name}'s jobs as {user.pw_name} (the owner of {project})"
        audit = CodeAudit(frozenset({0, user.pw_uid}))
        audit.chain(project / VENV / "bin" / "ops")
        audit.chain(project / self.template)
        audit.tree(project / VENV)
        audit.tree(Path(ops.__file__).resolve().parent)
        if audit.found:
            owners = "root's" if user.pw_uid == 0 else f"{user.pw_name}'s or root's"
            raise ConfigError(
                f"cron would run {who} with code others can change: {_listed(audit.found)}. Whoever can change it "
                f"runs as {user.pw_name} at the next job: make it {owners} and not writable by group or others "
                f"(`sudo chown -R ... && sudo chmod -R go-w ...`), or move the project where only {user.pw_name} can write"
            )
        if user.pw_uid == 0:
            return
        if not reaches_docker(user, self.docker_group):
            raise ConfigError(
                f"cron would run {who}, who cannot reach Docker (not in group {self.docker_group}): "
                f"`sudo usermod -aG {self.docker_group} {user.pw_name}`"
            )
        variables = cron_variables(text)
        fixes = [
            fix
            for name in self.rendered
            if variables.get(name)
            and (fix := path_fix(Path(variables[name]), user, appended=name == self.log_variable, project=project))
        ]
        if fixes:
            names = ", ".join(name for name in self.rendered if variables.get(name))
            commands = " && ".join(c for _, c in fixes if c)
            raise ConfigError(
                f"cron would run {who}, who cannot write {_listed([f for f, _ in fixes])}: "
                + (f"`{commands}`, or " if commands else "")
                + f"set {names} in vps.env to files {user.pw_name} can write"
            )

    def installed(self, settings: Settings) -> tuple[bool, str]:
        """Given Settings, return (whether the installed file is the rendered template, what was seen)."""
        target = self.target(settings)
        if not target.exists():
            return False, f"{target} is missing"
        if target.read_text() != self.render(settings):
            return False, f"{target} differs from {self.template}: run the slice's apply again"
        return True, f"{target} matches {self.template}"

    def install(self, settings: Settings) -> list[str]:
        """Install (or, if the template is gone, remove) the cron file; return what changed."""
        target = self.target(settings)
        if not (settings.project_dir / self.template).exists():
            if target.exists():
                target.unlink()
                return [f"removed {target}"]
            return []
        wanted = self.render(settings)
        if target.exists() and target.read_text() == wanted:
            return []
        self.check_safe(settings, wanted)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # cron reads files in /etc/cron.d that are root's and not group/other-writable; write atomically
            with tempfile.NamedTemporaryFile("w", dir=target.parent, prefix=".aistack-", delete=False) as tmp:
                tmp.write(wanted)
            os.chmod(tmp.name, 0o644)
            os.replace(tmp.name, target)
        except OSError as exc:
            raise ConfigError(f"cannot install {target}: {exc.strerror} (installing a cron job needs root: sudo)") from exc
        return [f"installed {target}"]

    def run_job(self, text: str, marker: str) -> tuple[int, str]:
        """Given the cron file's text, run its job containing marker as cron would; return (exit status, its log or output)."""
        return run_as_cron(text, marker, self.log_variable)


def with_user(text: str, user: str) -> str:
    """Given a cron.d file, return it with every job's user field set to user (the spacing kept)."""
    lines = []
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and not ASSIGNMENT.match(stripped):
            times = 1 if stripped.startswith("@") else 5  # "@daily user command" or five time fields
            if match := re.match(rf"^(\s*(?:\S+\s+){{{times}}})\S+(\s.*)$", line, re.DOTALL):
                line = match.group(1) + user + match.group(2)
        lines.append(line)
    return "".join(lines)


def cron_variables(text: str) -> dict[str, str]:
    """Given a cron.d file, return its variables."""
    return {m.group(1): m.group(2) for line in text.splitlines() if (m := ASSIGNMENT.match(line))}


def reaches_docker(user: pwd.struct_passwd, group: str) -> bool:
    """Given an account and the Docker engine's group, return whether the account can use the engine."""
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return user.pw_uid == 0
    return user.pw_uid == 0 or gid in os.getgrouplist(user.pw_name, user.pw_gid)


def _writable_by(info: os.stat_result, user: pwd.struct_passwd) -> bool:
    if user.pw_uid == 0:
        return True
    if info.st_uid == user.pw_uid:  # the owner's bits decide for the owner, then the group's, then the others'
        return bool(info.st_mode & stat.S_IWUSR)
    if info.st_gid in os.getgrouplist(user.pw_name, user.pw_gid):
        return bool(info.st_mode & stat.S_IWGRP)
    return bool(info.st_mode & stat.S_IWOTH)


def path_fix(path: Path, user: pwd.struct_passwd, appended: bool, project: Path) -> tuple[str, str] | None:
    """Given a file a job writes, its user, whether the job only appends to it (a log: else it replaces or creates it,
    so its directory must be the user's) and the project, return None if the user can, else (what they cannot write,
    the command that lets them, or "" when the directory is not one to give away)."""
    owner = f"{user.pw_name}:{grp.getgrgid(user.pw_gid).gr_name}"
    try:
        info: os.stat_result | None = path.lstat()
    except FileNotFoundError:
        info = None
    if info is not None and stat.S_ISLNK(info.st_mode):
        return f"{path} (a symlink)", ""  # chown would follow it
    if info is not None and not _writable_by(info, user):
        return str(path), f"sudo chown {owner} {path}"
    directory = path.parent
    if not directory.exists():
        return str(directory), f"sudo install -d -o {user.pw_name} -g {owner.split(':')[1]} -m 750 {directory}"
    if _writable_by(directory.stat(), user) or (appended and info is not None):
        return None
    if appended:
        return str(path), f"sudo install -o {user.pw_name} -g {owner.split(':')[1]} -m 640 /dev/null {path}"
    ours = "aistack" in directory.name or directory.is_relative_to(project)  # never give away /var/lib or /run
    return f"the directory {directory}", f"sudo chown {owner} {directory}" if ours else ""


def _listed(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return "; ".join(items[:SHOWN]) + more


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


@dataclass
class CodeAudit:
    """Who can change the code a job runs, besides the allowed users: a path's owner (who can chmod it), its group's
    members if it is group-writable, anyone if it is other-writable. A sticky directory on the way to it (/tmp) lets
    others add names there but not replace one of ours, so it counts for the way, not for a tree of code."""

    allowed: frozenset[int]
    found: list[str] = field(default_factory=list)
    _seen: dict[Path, bool] = field(default_factory=dict)  # path: checked as code (not only as a way to it)
    _members: dict[int, frozenset[int]] = field(default_factory=dict)
    _trees: list[Path] = field(default_factory=list)

    def members(self, gid: int) -> frozenset[int]:
        """Return the uids in group gid: those it lists and those whose primary group it is."""
        if gid not in self._members:
            try:
                names = set(grp.getgrgid(gid).gr_mem)
            except KeyError:
                names = set()
            uids = {pw.pw_uid for pw in pwd.getpwall() if pw.pw_gid == gid or pw.pw_name in names}
            self._members[gid] = frozenset(uids)
        return self._members[gid]

    def problem(self, path: Path, info: os.stat_result, way: bool) -> str:
        """Given a path and its lstat, return who else can change it ("" if nobody)."""
        if info.st_uid not in self.allowed:
            return f"{path} belongs to {_name(info.st_uid)}"
        mode = info.st_mode
        if way and stat.S_ISDIR(mode) and mode & stat.S_ISVTX:
            return ""
        if mode & stat.S_IWOTH:
            return f"{path} is writable by everyone (mode {stat.S_IMODE(mode):o})"
        others = self.members(info.st_gid) - self.allowed if mode & stat.S_IWGRP else frozenset()
        if others:
            try:
                group = grp.getgrgid(info.st_gid).gr_name
            except KeyError:
                group = f"gid {info.st_gid}"
            return f"{path} is writable by group {group} ({', '.join(sorted(_name(u) for u in others))})"
        return ""

    def check(self, path: Path, way: bool, info: os.stat_result | None = None) -> None:
        """Check one path (a symlink: the path it leads to, and the way there)."""
        if len(self.found) >= SHOWN + 1 or self._seen.get(path) is False or (way and path in self._seen):
            return
        self._seen[path] = way
        try:
            info = info or path.lstat()
        except FileNotFoundError:
            return
        if stat.S_ISLNK(info.st_mode):
            self.chain(path.resolve())
        elif (problem := self.problem(path, info, way)) and problem not in self.found:
            self.found.append(problem)

    def chain(self, path: Path) -> None:
        """Check path and every directory on the way to it, following symlinks."""
        current = Path(path.anchor)
        self.check(current, True)
        for part in path.parts[1:]:
            current = current / part
            self.check(current, True)
            if current.is_symlink():
                current = current.resolve()

    def tree(self, root: Path) -> None:
        """Check root, the way to it and everything below it (what a symlink there leads to, and the way there)."""
        self.chain(root)
        real = root.resolve()
        if not real.is_dir() or any(real.is_relative_to(done) for done in self._trees):
            return
        self._trees.append(real)
        self.check(real, False)
        pending = [str(real)]
        while pending and len(self.found) <= SHOWN:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:  # tens of thousands in a venv: the common case costs one lstat
                    info = entry.stat(follow_symlinks=False)
                    if info.st_uid not in self.allowed or info.st_mode & 0o022 or stat.S_ISLNK(info.st_mode):
                        self.check(Path(entry.path), False, info)
                    if stat.S_ISDIR(info.st_mode):
                        pending.append(entry.path)


def cron_job(text: str, marker: str) -> tuple[dict[str, str], str, str]:
    """Given a cron.d file, return (its variables, the user, the command) of the job containing marker.

    Raise ConfigError if no job has it.
    """
    variables: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if match := ASSIGNMENT.match(line):
            variables[match.group(1)] = match.group(2)
            continue
        fields = line.split(None, 6)
        if len(fields) == 7 and marker in fields[6]:
            return variables, fields[5], fields[6]
    raise ConfigError(f"no job running `ops {marker}` in the cron file")


def run_as_cron(text: str, marker: str, log_variable: str = "") -> tuple[int, str]:
    """Run the job containing marker as cron would: its SHELL, only cron's environment, from the user's home.

    Run as root, it runs the job as the job's user (with that user's groups), as cron does. Return its exit status
    and what it appended to its log (the file log_variable names), or its output if it has none.
    """
    variables, user, command = cron_job(text, marker)
    switch: dict[str, Any] = {}
    try:
        account = pwd.getpwnam(user)
        home = account.pw_dir
        if os.geteuid() == 0 and account.pw_uid != 0:
            groups = os.getgrouplist(user, account.pw_gid)
            switch = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": groups}
    except KeyError:
        home = "/"
    env = {"HOME": home, "LOGNAME": user, "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin", **variables}  # all cron gives
    log = Path(variables.get(log_variable, "/dev/null") if log_variable else "/dev/null")
    offset = log.stat().st_size if log.is_file() else 0
    proc = subprocess.run(
        [env["SHELL"], "-c", command],
        env=env,
        cwd=home if Path(home).is_dir() else "/",
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        **switch,
    )
    output = proc.stdout + proc.stderr
    if log.is_file():
        with log.open(errors="replace") as handle:
            handle.seek(offset)
            output = handle.read() + output
    return proc.returncode, output.strip()
