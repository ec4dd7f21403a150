"""Compose profiles in vps.env (COMPOSE_PROFILES): which optional parts of the stack run, and turning one on.

Compose reads COMPOSE_PROFILES from the --env-file ops passes it (vps.env), so a
profile turned on here holds for every later `ops` and `docker compose` command.
The observer (profile ``events``) needs the truth repository: started without
it, it exits and restart-loops, so its profile goes on once the repository exists.

Turning a profile off is not enough for compose: `up --remove-orphans` keeps the
containers of a profile that is off running, since their services are still in
the compose file (tried on Compose 2.40.3); ``disable_profile`` stops them by name.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ops.config import Settings
from ops.envfile import format_env_value, parse_env_text
from ops.errors import ConfigError

if TYPE_CHECKING:
    from ops.stack import Service

EVENTS = "events"
_PROFILES_LINE = re.compile(r"^\s*(?:export\s+)?COMPOSE_PROFILES\s*=.*$", re.M)


def truth_repo(settings: Settings) -> Path:
    """Given Settings, return the truth repository's path (OPS_EVENTS_REPO). Raise ConfigError on a bad events setting."""
    from ops.events.context import events_config

    return events_config(settings).repo


def is_git_work_tree(path: Path) -> bool:
    """Given a path, return True if it is a git work tree as the observer's reconciler requires (it holds .git/)."""
    return (path / ".git").is_dir()


def enable_profile(settings: Settings, profile: str) -> list[str]:
    """Given Settings and a profile, add it to COMPOSE_PROFILES in vps.env; return what changed (nothing if it was on).

    The file is replaced atomically with its mode and owner kept, every other
    line as it was. Raise ConfigError if vps.env is missing or cannot be written.
    """
    if profile in settings.profiles:
        return []
    return _write_profiles(settings, lambda profiles: [*profiles, profile])


def _write_profiles(settings: Settings, change: Callable[[list[str]], list[str]]) -> list[str]:
    """Given Settings, set COMPOSE_PROFILES in vps.env to change(its profiles); return the change, said in one line.

    Raise ConfigError if vps.env cannot be read or written.
    """
    path = settings.env_file.resolve()  # a symlinked vps.env: write its target, keep the link
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    current = parse_env_text(text, str(path)).get("COMPOSE_PROFILES", "")
    profiles = change([p.strip() for p in current.split(",") if p.strip()])
    line = f"COMPOSE_PROFILES={format_env_value(','.join(profiles))}"
    if _PROFILES_LINE.search(text):
        # compose takes the last definition: set every one, so none left behind turns the profile off again
        text = _PROFILES_LINE.sub(lambda _: line, text)
    else:
        text = text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"
    _replace(path, text)
    return [f"{settings.env_file.name}: COMPOSE_PROFILES={','.join(profiles)}"]


def _replace(path: Path, text: str) -> None:
    """Write text to path through a temporary file renamed over it, with the old file's mode and owner."""
    stat = path.stat()
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, stat.st_mode & 0o777)
        if (stat.st_uid, stat.st_gid) != (os.geteuid(), os.getegid()):
            with contextlib.suppress(PermissionError):  # as a non-root user the file was ours anyway
                os.chown(tmp, stat.st_uid, stat.st_gid)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc


def enable_events_when_ready(settings: Settings) -> list[str]:
    """Given Settings, turn the observer's profile on once the truth repository is a git work tree; return changes.

    Without the repository nothing changes (the observer would restart-loop).
    Raise ConfigError on a bad events setting or an unwritable vps.env.
    """
    if not is_git_work_tree(truth_repo(settings)):
        return []
    return enable_profile(settings, EVENTS)


def disable_profile(settings: Settings, profile: str) -> list[str]:
    """Given Settings and a profile, drop it from COMPOSE_PROFILES in vps.env and stop its services; return changes.

    A profile already off is not an error: its services still running are stopped (after a hand edit of
    vps.env and an `up --remove-orphans`, which leaves them). Raise ConfigError if no service of the stack
    has that profile or vps.env cannot be written, ServiceError if Docker fails.
    """
    from ops.config import load_settings

    known = {p for service in _services(settings) for p in service.profiles}
    if profile not in known:
        raise ConfigError(f"no service has profile {profile!r}; the stack's profiles are: {', '.join(sorted(known)) or 'none'}")
    changes: list[str] = []
    if profile in settings.profiles:
        changes = _write_profiles(settings, lambda profiles: [p for p in profiles if p != profile])
        settings = load_settings(settings.project_dir)
    return changes + stop_disabled_services(settings)


def stop_disabled_services(settings: Settings) -> list[str]:
    """Given Settings, stop and remove the containers of services whose profiles are all off; return one line each.

    Their volumes are kept. Raise ServiceError if Docker fails.
    """
    from ops.runtime.compose import Compose

    compose = Compose.for_settings(settings)
    running = compose.ps()
    off = [s.name for s in _services(settings) if s.profiles and not s.enabled_with(settings.profiles) and s.name in running]
    compose.stop_and_remove(off)
    return [f"stopped and removed {name} (profile {', '.join(_profiles_of(settings, name))} is off)" for name in off]


def _services(settings: Settings) -> list[Service]:
    """Given Settings, return the stack's services, the overrides' merged in."""
    from ops.memory import merged_services
    from ops.stack import load_stack

    return merged_services(load_stack(settings.compose_file), settings.compose_overrides)


def _profiles_of(settings: Settings, name: str) -> tuple[str, ...]:
    return next(s.profiles for s in _services(settings) if s.name == name)
