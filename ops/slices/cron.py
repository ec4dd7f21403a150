"""A cron.d file a slice installs from a template in the project, and its jobs run the way cron runs them.

Slice 10 installs backups/crontab as /etc/cron.d/aistack-backups, slice 11
alerts/crontab as /etc/cron.d/aistack-alerts: the same steps, so one class.
The template's OPS_PROJECT_DIR line is set to the project's directory, and
the variables it names (a lock, a log, a state file) to vps.env's values when
set there (tests point them into a temp dir).
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ops.config import Settings
from ops.errors import ConfigError

ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


@dataclass(frozen=True)
class CronFile:
    """A template in the project (relative path), where it is installed, and what install fills in."""

    template: Path
    default_target: str  # /etc/cron.d/<name>
    target_variable: str  # the vps.env variable that moves it (tests)
    rendered: tuple[str, ...] = ()  # crontab variables a project may set in vps.env
    log_variable: str = ""  # the crontab variable naming the log its jobs append to

    def target(self, settings: Settings) -> Path:
        """Given Settings, return where the file is installed."""
        return Path(settings.effective_env.get(self.target_variable) or self.default_target)

    def render(self, settings: Settings) -> str:
        """Given Settings, return the template with OPS_PROJECT_DIR (and the rendered variables set in vps.env) filled in."""
        text = (settings.project_dir / self.template).read_text()
        values = {"OPS_PROJECT_DIR": str(settings.project_dir)}
        values.update({name: settings.effective_env[name] for name in self.rendered if settings.effective_env.get(name)})
        for name, value in values.items():
            text = re.sub(rf"(?m)^{name}=.*$", f"{name}={value}".replace("\\", "\\\\"), text)
        return text

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
        target.parent.mkdir(parents=True, exist_ok=True)
        # cron reads files in /etc/cron.d that are root's and not group/other-writable; write atomically
        with tempfile.NamedTemporaryFile("w", dir=target.parent, prefix=".aistack-", delete=False) as tmp:
            tmp.write(wanted)
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, target)
        return [f"installed {target}"]

    def run_job(self, text: str, marker: str) -> tuple[int, str]:
        """Given the cron file's text, run its job containing marker as cron would; return (exit status, its log or output)."""
        return run_as_cron(text, marker, self.log_variable)


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

    Return its exit status and what it appended to its log (the file log_variable names), or its output if it has none.
    """
    variables, user, command = cron_job(text, marker)
    try:
        home = pwd.getpwnam(user).pw_dir
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
    )
    output = proc.stdout + proc.stderr
    if log.is_file():
        with log.open(errors="replace") as handle:
            handle.seek(offset)
            output = handle.read() + output
    return proc.returncode, output.strip()
