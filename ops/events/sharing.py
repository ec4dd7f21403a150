"""The observer's state directory, shared with the operators' group (OPS_EVENTS_GROUP, default ``aistack``).

The observer runs as root (in its container) and writes change requests
0640; operators read them through the state directory's group. That group
must be a dedicated one, never root: ``share_state_dir`` gives the directory
and ``change-requests/`` in it to the group and sets their setgid bit, so
every file made in them later (by the container's root too) gets the group.
Slice 7 calls it before the observer first starts, creating the group when
it runs as root on the host; the observer and ``ops cr`` call it without
creating anything (inside the container the host's group names do not
exist: the directory keeps the group the host gave it).
"""

from __future__ import annotations

import grp
import logging
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

from ops.errors import ConfigError, OpsError

GROUP_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")  # what groupadd accepts (Debian's default NAME_REGEX, lower case)
SHARED_DIRS = (".", "change-requests")
log = logging.getLogger("ops.events")


def check_group(value: str, name: str = "OPS_EVENTS_GROUP") -> str:
    """Given the configured group (a name or a number), return it. Raise ConfigError if it is root or malformed."""
    value = value.strip()
    if value in ("root", "0"):
        raise ConfigError(f"{name} must not be root: the operators' group must be a dedicated one (the default: aistack)")
    if not (value.isdigit() or GROUP_NAME.match(value)):
        raise ConfigError(f"{name} {value!r} is not a group name (lower case letters, digits, _ and -) nor a group id")
    return value


def group_id(group: str) -> int | None:
    """Given a group name or number, return its id, or None if no group has that name here."""
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def group_name(gid: int) -> str:
    """Return the name of group gid, or the number when it has none here."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def create_group(group: str) -> int:
    """Create the system group named group (as root); return its id. Raise OpsError if groupadd fails."""
    groupadd = shutil.which("groupadd") or "/usr/sbin/groupadd"
    try:
        proc = subprocess.run([groupadd, "--system", group], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OpsError(f"cannot create the group {group} (OPS_EVENTS_GROUP): {exc}") from None
    gid = group_id(group)
    if gid is None:
        raise OpsError(f"cannot create the group {group} (OPS_EVENTS_GROUP): {(proc.stderr or proc.stdout).strip()[-300:]}")
    return gid


def share_state_dir(state_dir: Path, group: str, create: bool = False) -> list[str]:
    """Given the observer's state directory and the operators' group, make the directory and its change-requests/
    exist, belong to the group (when it exists here, or create is set and this is root: then it is made) and carry
    the setgid bit and group read access. Return what changed.

    What this user may not change is left as it is (an operator running
    `ops cr list`); nothing is ever given to group root. Raise OpsError if
    the group cannot be created.
    """
    check_group(group)
    gid = group_id(group)
    if gid is None and create and os.geteuid() == 0:
        gid = create_group(group)
        changed = [f"created the group {group}"]
    else:
        changed = []
    for name in SHARED_DIRS:
        directory = (state_dir / name) if name != "." else state_dir
        try:
            directory.mkdir(parents=True, exist_ok=True)
            info = directory.stat()
            if gid is not None and info.st_gid != gid:
                try:
                    os.chown(directory, -1, gid)
                    changed.append(f"{directory}: group {group}")
                except PermissionError:
                    pass  # not root, nor its owner and a member of the group: the mode below may still be set
            mode = stat.S_IMODE(info.st_mode)
            wanted = mode | stat.S_ISGID | stat.S_IRGRP | stat.S_IXGRP
            if mode != wanted:
                os.chmod(directory, wanted)
                changed.append(f"{directory}: mode {wanted:o} (files made in it get its group)")
        except PermissionError:
            continue  # another user's directory: the permission error of whoever needs it names the fix
    if gid is None:
        log.info("the group %s (OPS_EVENTS_GROUP) does not exist here: %s keeps its group", group, state_dir)
    return changed
