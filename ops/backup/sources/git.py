"""The truth repository the reconciler writes: one bundle of every ref (``git bundle create - --all``).

The plan also pushes it to a remote in real time; the bundle is the copy in
the bucket. A restore clones the bundle into a new directory (scratch) and
never touches the working repository.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from ops.backup.context import BackupContext
from ops.backup.manifest import Entry
from ops.backup.pipeline import Command
from ops.backup.sources.base import Emit, Feed
from ops.errors import ConfigError, OpsError

log = logging.getLogger("ops.backup")
NAME = "git"
SCHEDULE = "daily"


def _argv(repo: Path, *args: str) -> tuple[str, ...]:
    """Return git's argv in repo, trusting it whoever owns it.

    cron runs the backup as root while the truth repository belongs to the
    operator; git then stops with "detected dubious ownership". Only git's
    read commands run here (bundle, for-each-ref, rev-parse), on the
    repository named in vps.env, so trusting that one directory is safe.
    """
    return ("git", "-c", f"safe.directory={repo.resolve()}", "-C", str(repo), *args)  # git compares real paths


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(list(_argv(repo, *args)), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise OpsError(f"git {' '.join(args)} in {repo} failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip()


def backup(ctx: BackupContext, emit: Emit) -> None:
    repo = ctx.git_repo
    if not repo.exists():
        log.warning("git source: %s does not exist yet (slices 8-9 create it); nothing to bundle", repo)
        return
    if not (repo / ".git").exists() and _git(repo, "rev-parse", "--is-bare-repository") != "true":
        raise ConfigError(f"OPS_GIT_REPO: {repo} is not a git repository")
    refs = _git(repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
    if not refs:
        return  # a repository with no commit has nothing to bundle
    emit("repo.bundle", Command(_argv(repo, "bundle", "create", "-", "--all")), {"refs": len(refs)})


def restore(ctx: BackupContext, entry: Entry, into: str, feed: Feed) -> str:
    """Clone the bundle into <project>/.ops/restore/git-<run> (scratch), or, live, into the repository's path
    when it does not exist (a new host: `ops recover`). Raise ConfigError for a live restore over a repository."""
    if into == "live":
        if ctx.git_repo.exists() and any(ctx.git_repo.iterdir()):
            raise ConfigError(
                f"{ctx.git_repo} exists: git is restored beside the repository (--into scratch); then fetch from it"
            )
        return _restore_new(ctx, entry, feed)
    run_id = entry.object.split("/")[-3]
    target = ctx.project_dir / ".ops" / "restore" / f"git-{run_id}"
    if target.exists():
        raise ConfigError(f"{target} exists already: remove it or pick another backup")
    target.parent.mkdir(parents=True, exist_ok=True)
    bundle = target.parent / f"git-{run_id}.bundle"
    try:
        feed(Command(("dd", f"of={bundle}", "bs=1M", "status=none")))
        subprocess.run(["git", "clone", "--quiet", "--mirror", str(bundle), str(target)], check=True, capture_output=True)
        _git(target, "bundle", "verify", str(bundle))
    except BaseException as exc:
        shutil.rmtree(target, ignore_errors=True)  # a partial clone would block the next try ("exists already")
        if isinstance(exc, subprocess.CalledProcessError):
            raise OpsError(f"cloning the bundle failed: {exc.stderr.decode(errors='replace')[-300:]}") from exc
        raise
    finally:
        bundle.unlink(missing_ok=True)
    return f"repository restored as a mirror clone in {target}"


def _restore_new(ctx: BackupContext, entry: Entry, feed: Feed) -> str:
    """Clone the bundle as the repository itself, every ref of it as it was (branches, tags, remote-tracking)."""
    repo = ctx.git_repo
    repo.parent.mkdir(parents=True, exist_ok=True)
    bundle = repo.parent / f".{repo.name}-restore.bundle"
    existed = repo.exists()  # empty (restore checked): a failure leaves it so, and a re-run restores it again
    try:
        feed(Command(("dd", f"of={bundle}", "bs=1M", "status=none")))
        clone = ["git", "clone", "--quiet", "--origin", "ops-bundle", str(bundle), str(repo)]
        subprocess.run(clone, check=True, capture_output=True)
        _git(repo, "fetch", "--quiet", "--update-head-ok", str(bundle), "+refs/*:refs/*")
        _git(repo, "remote", "remove", "ops-bundle")  # the bundle file goes; the observer's remote is in vps.env
    except BaseException as exc:
        shutil.rmtree(repo, ignore_errors=True)  # a partial repository would be "kept" by the next recover
        if existed:
            repo.mkdir()
        if isinstance(exc, subprocess.CalledProcessError):
            raise OpsError(f"cloning the bundle into {repo} failed: {exc.stderr.decode(errors='replace')[-300:]}") from exc
        raise
    finally:
        bundle.unlink(missing_ok=True)
    return f"repository restored into {repo} ({entry.meta.get('refs', '?')} refs)"
