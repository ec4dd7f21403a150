"""Apply approved change requests to the git repository: one commit per change, pushed without force.

A change writes (or, for a ``*_deleted`` action, removes) the file its
resource names: ``/tasks/task-456`` is ``tasks/task-456.json`` holding the
event's data; a resource with a text suffix (.md, .txt, .yaml) holding
``data.content`` is written as that text. Paths are validated before
anything is touched: no absolute paths, no ``..``, nothing under ``.git``,
only the allowed roots, and no symlink anywhere on the way. Each commit
carries ``Event-Id`` and ``Aggregate`` trailers; nothing is committed when
nothing changed. The push is a plain fast-forward push: when the remote
moved, the reconciler fetches, and re-applies on top unless the remote
changed the same file (then the change goes back for a decision). It never
forces.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ops.errors import OpsError
from ops.events.schema import Event

TEXT_SUFFIXES = (".md", ".txt", ".yaml", ".yml")
COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
PUSH_ATTEMPTS = 3


class UnsafePath(OpsError):
    """A resource names a path the reconciler must not write."""


class PushConflict(OpsError):
    """The remote changed the same file since the change was decided."""


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
        proc = subprocess.run(
            ["git", "-C", str(self.repo), *self._identity, *args],
            capture_output=True,
            text=True,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise OpsError(f"git {args[0]} failed in {self.repo}: {(proc.stderr or proc.stdout).strip()[-400:]}")
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

    def sync(self) -> str:
        """Bring the work tree to the remote branch (when there is one); return HEAD. Refuse a dirty tree."""
        if self.git("status", "--porcelain").stdout.strip():
            raise OpsError(f"{self.repo} has uncommitted changes: the reconciler owns this work tree; clean it first")
        if self.has_remote:
            fetched = self.git("fetch", "--quiet", self.remote, self.branch, check=False)
            if fetched.returncode != 0:
                if "couldn't find remote ref" in fetched.stderr:
                    return self.git("rev-parse", "HEAD", check=False).stdout.strip()  # an empty remote: the push creates it
                raise OpsError(f"git fetch {self.remote} failed: {fetched.stderr.strip()[-300:]}")
            if self.git("rev-parse", "--verify", "--quiet", "HEAD", check=False).returncode == 0:
                ahead = self.git("rev-list", "--count", f"{self.remote}/{self.branch}..HEAD").stdout.strip()
                if ahead != "0":
                    # a commit a crash left unpushed: push it, or, if the remote moved, drop it (its
                    # event is not acknowledged, so it is applied again on top of the remote)
                    with contextlib.suppress(PushConflict):
                        self.push()
            self.git("reset", "--quiet", "--hard", f"{self.remote}/{self.branch}")
        return self.git("rev-parse", "HEAD", check=False).stdout.strip()

    def push(self) -> None:
        """Push HEAD as a fast-forward. Raise PushConflict (nothing forced) if the remote moved."""
        proc = self.git("push", "--porcelain", self.remote, f"HEAD:refs/heads/{self.branch}", check=False)
        if proc.returncode == 0:
            return
        said = (proc.stderr + proc.stdout).strip()
        if "rejected" in said or "non-fast-forward" in said or "fetch first" in said:
            raise PushConflict(f"the remote {self.branch} moved: {said[-300:]}")
        raise OpsError(f"git push to {self.remote} failed (not a conflict; the change is retried): {said[-300:]}")

    def apply(self, event: Event) -> Applied:
        """Commit event's change (once) and push it; return the commit. Raise UnsafePath or PushConflict."""
        path = target_path(self.repo, event.payload.resource, self.roots)
        for attempt in range(PUSH_ATTEMPTS):
            base = self.sync()
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

    def _commit(self, event: Event, path: PurePosixPath) -> Applied:
        content = render(event, path)
        target = self.repo / path
        if content is None:
            if not target.exists():
                return Applied("", str(path), "already absent: nothing to commit")
            self.git("rm", "--quiet", "--", str(path))
        else:
            if target.exists() and target.read_text() == content:
                return Applied("", str(path), "unchanged: nothing to commit")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            self.git("add", "--", str(path))
        message = (
            f"{event.payload.action}: {event.payload.resource}\n\n{event.payload.reasoning.strip()[:2000]}\n\n"
            f"Event-Id: {event.event_id}\nAggregate: {event.aggregate_id}@{event.version}\n"
            f"Agent: {event.agent.agent_id} ({event.agent.model})\nCorrelation-Id: {event.metadata.correlation_id}\n"
        )
        self.git("commit", "--quiet", "-F", "-", stdin=message)
        return Applied(self.git("rev-parse", "HEAD").stdout.strip(), str(path), "committed")
