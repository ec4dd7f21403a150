"""The observer's profile (events) is on exactly when the truth repository exists.

Compose treats a service of a profile that is off as absent: slices 8 and 9
would stop at `no such service: observer` (source: docs.docker.com, compose
profiles). On without the repository, the observer exits ("not a git work
tree") and restart-loops, and `up --wait` fails.
"""

from __future__ import annotations

from ops.doctor import DoctorContext, Finding
from ops.errors import ConfigError
from ops.profiles import EVENTS, is_git_work_tree, truth_repo

NAME = "events"
DESCRIPTION = "COMPOSE_PROFILES has events once OPS_EVENTS_REPO is a git work tree, and not before"


def check(ctx: DoctorContext) -> list[Finding]:
    settings = ctx.settings
    if ctx.stack is None or "observer" not in {s.name for s in ctx.stack.services}:
        return []
    try:
        repo = truth_repo(settings)
    except ConfigError as exc:
        return [Finding(NAME, "error", str(exc))]
    shown = settings.effective_env.get("OPS_EVENTS_REPO") or str(repo)
    ready, enabled = is_git_work_tree(repo), EVENTS in settings.profiles
    if ready and not enabled:
        return [
            Finding(
                NAME,
                "error",
                f"OPS_EVENTS_REPO {shown} is a git work tree but COMPOSE_PROFILES lacks {EVENTS}: the observer is not "
                f"started and slices 8-9 stop at `no such service: observer`; add {EVENTS} to COMPOSE_PROFILES in "
                f"{settings.env_file.name} (make slice-7 does)",
            )
        ]
    if enabled and not ready:
        return [
            Finding(
                NAME,
                "error",
                f"COMPOSE_PROFILES has {EVENTS} but OPS_EVENTS_REPO {shown} is not a git work tree: the observer would "
                "restart-loop and `up --wait` fail; clone the truth repository there first (docs/RUNBOOK.md, "
                '"Events and the observer")',
            )
        ]
    return []
