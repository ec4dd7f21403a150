"""Apply approved change requests to the git repository: one commit per change, pushed without force.

A change writes (or, for a ``*_deleted`` action, removes) the file its
resource names: ``/tasks/task-456`` is ``tasks/task-456.json`` holding the
event's data; a resource with a text suffix (.md, .txt, .yaml) holding
``data.content`` is written as that text. Paths are validated before
anything is touched and again after every sync with the remote (which may
bring a symlink in): no absolute paths, no ``..``, nothing under ``.git``,
only the allowed roots, and no symlink anywhere on the way; the file is then
opened directory by directory with O_NOFOLLOW, so a link that appears in
between is refused too. The reconciler never destroys what it did not make:
before each change, what a crash or a human left uncommitted (modified or
untracked files) is saved with ``git stash push --include-untracked`` under
``observer-recover <time> <event id>`` and logged; a local commit the remote
cannot take is kept under ``refs/observer/unpushed/``; a git lock
(``.git/index.lock``, which a human's ``git commit`` holds while its editor is
open) is never removed: the change waits (RepoLocked) and is tried later. Each commit
carries ``Event-Id`` and ``Aggregate`` trailers; nothing is committed when
nothing changed. The push is a plain fast-forward push: when the remote
moved, the reconciler fetches, and re-applies on top unless the remote
changed the same file (then the change goes back for a decision). It never
forces.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from ops.errors import OpsError
from ops.events.schema import Event

TEXT_SUFFIXES = (".md", ".txt", ".yaml", ".yml")
COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
PUSH_ATTEMPTS = 3
GIT_TIMEOUT = 120  # seconds for one git command
STASH_PREFIX = "observer-recover"
UNPUSHED_REFS = "refs/observer/unpushed"
# what git says when another git process holds one of its locks (index.lock, HEAD.lock, a ref's lock)
LOCK_HELD = re.compile(r"Unable to create '([^']+\.lock)': File exists|cannot lock ref|could not lock config file")
log = logging.getLogger("ops.reconciler")


class UnsafePath(OpsError):
    """A resource names a path the reconciler must not write."""


class RemoteUnavailable(OpsError):
    """The remote could not be fetched from or pushed to (down, slow, refused): not the change's fault; retried."""


class PushConflict(OpsError):
    """The remote changed the same file since the change was decided."""


class Deferred(OpsError):
    """The change cannot be applied now for a reason that is not its own (a git lock held, a full disk): tried later."""


class RepoLocked(Deferred):
    """Another git process (a human's `git commit`, say) holds a lock in the truth repository."""

    def __init__(self, message: str, lock: Path, held_since: float | None = None) -> None:
        super().__init__(message)
        self.lock = lock
        self.held_since = held_since  # the lock file's mtime when it was seen, None if git only said so


class NoSpace(Deferred):
    """The disk holding the truth repository is full (ENOSPC)."""


def deferral(exc: BaseException) -> Deferred | None:
    """Given an exception from applying a change, return it as a Deferred (not the change's fault), or None.

    A Deferred is returned as it is; an OSError with ENOSPC (the disk is full) becomes NoSpace.
    """
    if isinstance(exc, Deferred):
        return exc
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return NoSpace(f"no space left on the device holding {exc.filename or 'the truth repository'}; tried again later")
    return None


@dataclass(frozen=True)
class Applied:
    commit: str  # "" when nothing changed
    path: str
    note: str


def target_path(repo: Path, resource: str, roots: tuple[str, ...]) -> PurePosixPath:
    """Given a resource like /tasks/task-456, return its path relative to repo. Raise UnsafePath naming why not."""
    if "\\" in resource or "\x00" in resource:
        raise UnsafePath(f"resource {resource!r}: backslashes and NUL are not allowed")
    if resource.startswith("//") or re.match(r"^[A-Za-z]:", resource):
        raise UnsafePath(f"resource {resource!r} is an absolute path")
    parts = resource.removeprefix("/").split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePath(f"resource {resource!r}: empty, '.' or '..' components are not allowed")
        if part.lower() == ".git" or part.lower().startswith(".git"):
            raise UnsafePath(f"resource {resource!r}: nothing under .git may be written")
        if not COMPONENT.match(part):
            raise UnsafePath(f"resource {resource!r}: component {part!r} has characters outside [A-Za-z0-9._-]")
    if parts[0] not in roots:
        raise UnsafePath(f"resource {resource!r} is outside the allowed roots ({', '.join(roots)})")
    if len(parts) < 2:
        raise UnsafePath(f"resource {resource!r} names a root, not a file in it")
    path = PurePosixPath(*parts)
    if path.suffix == "":
        path = path.with_suffix(".json")
    # no symlink on the way: a link could point anywhere, including .git or outside the repository
    current = repo
    for part in path.parts:
        current = current / part
        if current.is_symlink():
            raise UnsafePath(f"resource {resource!r}: {current.relative_to(repo)} is a symbolic link")
    resolved = (repo / path).resolve()
    if not resolved.is_relative_to(repo.resolve()):
        raise UnsafePath(f"resource {resource!r} resolves outside the repository")
    return path


def render(event: Event, path: PurePosixPath) -> str | None:
    """Return the file's new content, or None to delete it."""
    if event.payload.action.endswith("_deleted") or event.payload.action == "delete":
        return None
    content = event.payload.data.get("content")
    if path.suffix in TEXT_SUFFIXES and isinstance(content, str):
        return content if content.endswith("\n") else content + "\n"
    return json.dumps(event.payload.data, indent=2, sort_keys=True) + "\n"


class Reconciler:
    def __init__(
        self,
        repo: Path,
        roots: tuple[str, ...],
        remote: str = "origin",
        branch: str = "main",
        author: str = "aistack observer <observer@aistack.invalid>",
    ) -> None:
        self.repo, self.roots, self.remote, self.branch = repo, roots, remote, branch
        name, _, email = author.partition(" <")
        self._identity = ["-c", f"user.name={name}", "-c", f"user.email={email.rstrip('>')}"]
        if not (repo / ".git").is_dir():
            raise OpsError(f"OPS_EVENTS_REPO: {repo} is not a git work tree")

    def git(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run git in the repository; return the process. Raise OpsError if it fails (with check) or times out
        (RemoteUnavailable for a fetch or push that times out)."""
        try:
            proc = subprocess.run(
                ["git", "-C", str(self.repo), *self._identity, *args],
                capture_output=True,
                text=True,
                input=stdin,
                stdin=subprocess.DEVNULL if stdin is None else None,
                timeout=GIT_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            kind = RemoteUnavailable if args[0] in ("fetch", "push") else OpsError
            raise kind(f"git {args[0]} took longer than {GIT_TIMEOUT} s in {self.repo}; it is tried again") from None
        if check and proc.returncode != 0:
            said = (proc.stderr or proc.stdout).strip()
            locked = LOCK_HELD.search(said)
            if locked:  # git's own lock contention: another git process is at work, not the change's fault
                lock = Path(locked.group(1)) if locked.group(1) else self.repo / ".git"
                try:
                    since: float | None = lock.stat().st_mtime
                except OSError:
                    since = None  # released meanwhile, or a ref lock git does not name
                raise RepoLocked(
                    f"git {args[0]} in {self.repo}: another git process holds a lock; tried again later ({said[-300:]})",
                    lock,
                    since,
                )
            if "No space left on device" in said:
                raise NoSpace(f"git {args[0]} in {self.repo}: no space left on the device; tried again later")
            raise OpsError(f"git {args[0]} failed in {self.repo}: {said[-400:]}")
        return proc

    @property
    def has_remote(self) -> bool:
        return bool(self.remote) and self.remote in self.git("remote").stdout.split()

    def committed(self, event_id: str) -> str:
        """Return the commit carrying event_id's trailer among the recent ones, or ''."""
        if self.git("rev-parse", "--verify", "--quiet", "HEAD", check=False).returncode != 0:
            return ""  # no commit yet
        out = self.git("log", "-n", "500", "--format=%H", f"--grep=^Event-Id: {event_id}$").stdout.split()
        return out[0] if out else ""

    def check_lock(self) -> None:
        """Return if no git process holds the repository's index. Raise RepoLocked (the lock is never removed) if one does.

        A lock is only ever released by the process that holds it: a human's
        `git commit` holds it while its editor is open, for as long as it takes.
        """
        lock = self.repo / ".git" / "index.lock"
        try:
            since = lock.stat().st_mtime
        except FileNotFoundError:
            return
        raise RepoLocked(
            f"{lock} exists: another git process (a `git commit` waiting for its editor?) is using {self.repo}; "
            "the change waits and is tried later (if no git process is running there, remove the lock by hand)",
            lock,
            since,
        )

    def recover(self, label: str = "") -> str:
        """Save what a crash or a human left uncommitted in the work tree, never discarding it; return where it went.

        Modified, staged and untracked files (not ignored ones) go into a stash
        named ``observer-recover <time> <label>`` (with no commit yet, into
        ``.git/observer-recover/<time>/``); '' when the tree was clean. Raise
        RepoLocked if a git lock is held: nothing is touched then.
        """
        self.check_lock()
        dirty = self.git("status", "--porcelain", "--untracked-files=all").stdout.splitlines()
        if not dirty:
            return ""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        name = f"{STASH_PREFIX} {stamp} {label}".strip()
        listed = "; ".join(dirty[:20]) + (" ..." if len(dirty) > 20 else "")
        if self.git("rev-parse", "--verify", "--quiet", "HEAD", check=False).returncode == 0:
            self.git("stash", "push", "--quiet", "--include-untracked", "-m", name)
            where = f"the stash {self.git('rev-parse', 'refs/stash').stdout.strip()[:12]} ({name!r})"
            how = f"`git -C {self.repo} stash list` shows it, `git stash apply` brings it back"
        else:  # no commit yet: git cannot stash; move the files aside inside .git
            target = self.repo / ".git" / STASH_PREFIX / stamp.replace(":", "")
            for line in dirty:
                relative = line[3:].strip('"')
                source = self.repo / relative
                if source.exists() or source.is_symlink():
                    (target / relative).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(source, target / relative)
            self.git("read-tree", "--empty")  # unstage what was moved
            where, how = str(target), "copy the files back to restore them"
        log.warning(
            "%s: %d uncommitted change(s) were in the work tree the observer commits from (a crash, or a human "
            "editing it): saved in %s, not discarded (%s): %s",
            self.repo,
            len(dirty),
            where,
            how,
            listed,
        )
        return where

    def sync(self) -> str:
        """Bring the work tree to the remote branch (when there is one), saving what was left in it; return HEAD.

        Raise RepoLocked while a git lock is held, RemoteUnavailable if the remote cannot be fetched.
        """
        self.recover()
        if self.has_remote:
            fetched = self.git("fetch", "--quiet", self.remote, self.branch, check=False)
            if fetched.returncode != 0:
                if "couldn't find remote ref" in fetched.stderr:
                    return self.git("rev-parse", "HEAD", check=False).stdout.strip()  # an empty remote: the push creates it
                raise RemoteUnavailable(f"git fetch {self.remote} failed: {fetched.stderr.strip()[-300:]}")
            if self.git("rev-parse", "--verify", "--quiet", "HEAD", check=False).returncode == 0:
                ahead = self.git("rev-list", "--count", f"{self.remote}/{self.branch}..HEAD").stdout.strip()
                if ahead != "0":
                    # a commit a crash left unpushed (or a human's): push it, or, if the remote moved, keep it under
                    # a ref (its event, if it was the observer's, is not acknowledged: it is applied again on top)
                    try:
                        self.push()
                    except PushConflict:
                        self.keep_unpushed()
            self.git("reset", "--quiet", "--hard", f"{self.remote}/{self.branch}")
        return self.git("rev-parse", "HEAD", check=False).stdout.strip()

    def keep_unpushed(self) -> str:
        """Keep HEAD (commits the remote refused) under refs/observer/unpushed/<time>, and log it; return the ref."""
        ref = f"{UNPUSHED_REFS}/{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
        head = self.git("rev-parse", "HEAD").stdout.strip()
        self.git("update-ref", ref, head)
        log.warning(
            "%s: local commit(s) up to %s could not be pushed (the remote moved); kept as %s before resetting to %s/%s "
            "(`git -C %s log %s` shows them)",
            self.repo,
            head[:12],
            ref,
            self.remote,
            self.branch,
            self.repo,
            ref,
        )
        return ref

    def push(self) -> None:
        """Push HEAD as a fast-forward. Raise PushConflict (nothing forced) if the remote moved."""
        proc = self.git("push", "--porcelain", self.remote, f"HEAD:refs/heads/{self.branch}", check=False)
        if proc.returncode == 0:
            return
        said = (proc.stderr + proc.stdout).strip()
        if "rejected" in said or "non-fast-forward" in said or "fetch first" in said:
            raise PushConflict(f"the remote {self.branch} moved: {said[-300:]}")
        raise RemoteUnavailable(f"git push to {self.remote} failed (not a conflict; the change is retried): {said[-300:]}")

    def apply(self, event: Event) -> Applied:
        """Commit event's change (once) and push it; return the commit.

        Raise UnsafePath (also when the remote brought a symlink in),
        PushConflict, RemoteUnavailable, Deferred (a git lock held, a full
        disk: tried later), or OpsError naming what failed.
        """
        path = target_path(self.repo, event.payload.resource, self.roots)
        for attempt in range(PUSH_ATTEMPTS):
            self.recover(event.event_id)  # named after the event; sync() then finds a clean tree
            base = self.sync()
            path = target_path(self.repo, event.payload.resource, self.roots)  # the sync may have brought a symlink
            done = self.committed(event.event_id)
            if done:
                return Applied(done, str(path), "committed before (a re-delivered event)")
            applied = self._commit(event, path)
            if not applied.commit or not self.has_remote:
                return applied
            try:
                self.push()
                return applied
            except PushConflict:
                self.git("fetch", "--quiet", self.remote, self.branch)
                changed = self.git("diff", "--name-only", base, f"{self.remote}/{self.branch}", "--", str(path)).stdout.strip()
                self.git("reset", "--quiet", "--hard", f"{self.remote}/{self.branch}")
                if changed:
                    raise PushConflict(f"{path} changed in the remote since the change was decided") from None
                if attempt == PUSH_ATTEMPTS - 1:
                    raise
        raise PushConflict("the remote kept moving")  # pragma: no cover - the loop returns or raises

    def _open_dir(self, path: PurePosixPath, create: bool) -> int | None:
        """Open path's parent directory one component at a time, never following a symlink; return its fd.

        Return None when a component is missing and create is False. Raise
        UnsafePath on a symlink, OpsError when a component is a file.
        """
        fd = os.open(self.repo, os.O_RDONLY | os.O_DIRECTORY)
        walked = PurePosixPath()
        try:
            for part in path.parts[:-1]:
                walked /= part
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                try:
                    inner = os.open(part, flags, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(part, 0o755, dir_fd=fd)
                    inner = os.open(part, flags, dir_fd=fd)
                except OSError as exc:
                    if exc.errno == errno.ENOTDIR and os.path.islink(self.repo / walked):
                        raise UnsafePath(f"{walked} is a symbolic link: nothing is written through it") from None
                    if exc.errno == errno.ENOTDIR:
                        raise OpsError(f"cannot write {path}: {walked} is a file, not a directory") from None
                    if exc.errno == errno.ELOOP:
                        raise UnsafePath(f"{walked} is a symbolic link: nothing is written through it") from None
                    raise
                os.close(fd)
                fd = inner
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _current(self, parent: int | None, path: PurePosixPath) -> bytes | None:
        """Return the bytes of the file at path (parent is its directory's fd), or None if it does not exist."""
        if parent is None:
            return None
        try:
            fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=parent)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePath(f"{path} is a symbolic link: nothing is written through it") from None
            raise OpsError(f"cannot read {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as handle:
            try:
                return handle.read()
            except IsADirectoryError:
                raise OpsError(f"cannot write {path}: it is a directory") from None

    def _write(self, parent: int, path: PurePosixPath, content: bytes) -> None:
        """Write content to path's name in the directory parent, never through a symlink."""
        try:
            fd = os.open(path.name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePath(f"{path} is a symbolic link: nothing is written through it") from None
            if exc.errno == errno.ENOSPC:
                raise NoSpace(f"cannot write {path}: no space left on the device; tried again later") from None
            raise OpsError(f"cannot write {path}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)

    def _commit(self, event: Event, path: PurePosixPath) -> Applied:
        content = render(event, path)
        parent = self._open_dir(path, create=content is not None)
        try:
            current = self._current(parent, path)
            if content is None:
                if current is None:
                    return Applied("", str(path), "already absent: nothing to commit")
                self.git("rm", "--quiet", "--", str(path))
            else:
                if current == content.encode():
                    return Applied("", str(path), "unchanged: nothing to commit")
                if parent is None:  # pragma: no cover - _open_dir creates the directories when asked to
                    raise OpsError(f"cannot write {path}: its directory could not be created")
                self._write(parent, path, content.encode())
                self.git("add", "--", str(path))
        finally:
            if parent is not None:
                os.close(parent)
        message = (
            f"{event.payload.action}: {event.payload.resource}\n\n{event.payload.reasoning.strip()[:2000]}\n\n"
            f"Event-Id: {event.event_id}\nAggregate: {event.aggregate_id}@{event.version}\n"
            f"Agent: {event.agent.agent_id} ({event.agent.model})\nCorrelation-Id: {event.metadata.correlation_id}\n"
        )
        self.git("commit", "--quiet", "-F", "-", stdin=message)
        return Applied(self.git("rev-parse", "HEAD").stdout.strip(), str(path), "committed")
