"""Change requests: what the observer decided about each event, as JSON files plus an index in Redis.

A change request's id is ``cr_<event id>``, so a re-delivered event finds
its request instead of making a second one. Status goes pending -> approved
-> applied, or pending -> rejected; an approved request whose push met a
conflict goes back to pending; one that could not be applied after
MAX_ATTEMPTS tries is failed (approving it again retries it). The file
(written atomically, mode 0640 in the state directory's group, so operators
in that group can read it) is the record; one Redis set per status
(``<stream>:cr:<status>``) indexes the ids, so the observer's poll reads the
approved ones only, however long the history. Every change of status takes
an exclusive lock on the directory (flock) and re-reads the file, so a CLI
decision, a Telegram decision and the observer never overwrite each other:
the second decider gets AlreadyDecided.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from ops.errors import OpsError
from ops.events.publisher import Streams, explain
from ops.events.schema import Event, parse_event

STATUSES = ("pending", "approved", "applied", "rejected", "failed")
DECIDABLE = ("pending", "failed")  # what a human may approve or reject (approving a failed one retries it)
CR_ID_PREFIX = "cr_"
log = logging.getLogger("ops.changes")
FILE_MODE = 0o640  # the observer runs as root; operators read change requests through the directory's group
MAX_ATTEMPTS = 3  # tries before an approved change that keeps failing is marked failed


class UnknownChange(OpsError):
    """No change request has that id."""


class AlreadyDecided(OpsError):
    """The change request's status moved since it was read: someone else decided first."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class ChangeRequest:
    id: str
    event: dict[str, Any]
    stream_id: str
    status: str
    reason: str
    created_at: str = field(default_factory=now)
    decided_by: str = ""
    commit: str = ""
    history: list[str] = field(default_factory=list)
    attempts: int = 0  # failed tries to apply it since it was last approved

    @property
    def parsed(self) -> Event:
        return parse_event(self.event)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        event = self.event
        return {
            "id": self.id,
            "status": self.status,
            "aggregate_id": event["aggregate_id"],
            "version": event["version"],
            "action": event["payload"]["action"],
            "resource": event["payload"]["resource"],
            "reason": self.reason,
            "commit": self.commit,
        }


class ChangeStore:
    def __init__(self, directory: Path, client: redis.Redis, streams: Streams | None = None) -> None:
        self.directory = directory
        self.client = client
        self.streams = streams or Streams()
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except PermissionError as exc:
            raise self._denied(directory, writing=True) from exc

    def _path(self, cr_id: str) -> Path:
        if not cr_id.startswith(CR_ID_PREFIX) or "/" in cr_id or cr_id in (".", ".."):
            raise UnknownChange(f"{cr_id!r} is not a change request id (cr_evt_...): see `ops cr list`")
        return self.directory / f"{cr_id}.json"

    def _denied(self, path: Path, writing: bool = False) -> OpsError:
        """The error for a permission problem: which file, and the two ways out."""
        if writing:
            return OpsError(
                f"cannot write {path}: permission denied; deciding a change request writes in {self.directory}, "
                "which belongs to the observer: run the command with sudo (or `docker compose exec observer ops cr ...`)"
            )
        try:
            group = grp.getgrgid(self.directory.stat().st_gid).gr_name
        except (OSError, KeyError):
            group = "the state directory's group"
        return OpsError(
            f"cannot read {path}: permission denied; change requests are readable by the group {group}: "
            f"add your user to it (`sudo usermod -aG {group} $USER`, then log in again) or run the command with sudo"
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the directory (every process that changes a request takes it)."""
        try:
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        except PermissionError as exc:
            raise self._denied(self.directory) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, cr: ChangeRequest) -> None:
        try:
            with tempfile.NamedTemporaryFile("w", dir=self.directory, prefix=".cr-", delete=False) as tmp:
                json.dump(cr.to_dict(), tmp, indent=2, sort_keys=True)
                tmp.flush()
                self._share(tmp.fileno())
                os.fsync(tmp.fileno())
            os.replace(tmp.name, self._path(cr.id))
        except PermissionError as exc:
            raise self._denied(self._path(cr.id), writing=True) from exc
        self._index(cr.id, cr.status)

    def _share(self, fd: int) -> None:
        """Make an open file FILE_MODE in the directory's group (best effort: only root or a member may chgrp)."""
        os.fchmod(fd, FILE_MODE)
        gid = os.stat(self.directory).st_gid
        if os.fstat(fd).st_gid != gid:
            with contextlib.suppress(PermissionError):
                os.fchown(fd, -1, gid)

    def repair(self) -> int:
        """Make the files and the index agree with what the files say (the observer does it at start); return fixes.

        Files written before FILE_MODE (0600) get the directory's group and
        mode; a request whose index entry is missing or stale (a crash, or
        Redis refusing, between the file and the index) is indexed by its file.
        """
        fixed = 0
        gid = self.directory.stat().st_gid
        for path in sorted(self.directory.glob(f"{CR_ID_PREFIX}*.json")):
            with contextlib.suppress(OSError):
                if path.stat().st_mode & 0o777 != FILE_MODE or path.stat().st_gid != gid:
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                    try:
                        self._share(fd)
                        fixed += 1
                    finally:
                        os.close(fd)
            try:
                cr = self.get(path.stem)
            except OpsError as exc:
                log.warning("%s", exc)
                continue
            if not self.client.sismember(self.index_key(cr.status), cr.id):
                self._index(cr.id, cr.status)
                fixed += 1
        return fixed

    def index_key(self, status: str) -> str:
        return f"{self.streams.name}:cr:{status}"

    def _index(self, cr_id: str, status: str) -> None:
        try:
            with self.client.pipeline(transaction=True) as tx:
                for other in STATUSES:
                    if other != status:
                        tx.srem(self.index_key(other), cr_id)
                tx.sadd(self.index_key(status), cr_id)
                tx.execute()
        except (redis.ConnectionError, redis.TimeoutError):
            raise
        except redis.RedisError as exc:  # the file is the record: the observer re-indexes it when it starts
            raise explain(exc, f"indexing change request {cr_id} as {status}") from exc

    def create(self, event: Event, stream_id: str, status: str, reason: str) -> tuple[ChangeRequest, bool]:
        """Return the event's change request, made now with status and reason unless it exists (then created is False)."""
        cr_id = CR_ID_PREFIX + event.event_id
        with self._locked():
            if self._path(cr_id).exists():
                found = self.get(cr_id)
                self._index(cr_id, found.status)  # a crash may have come between file and index
                return found, False
            cr = ChangeRequest(cr_id, event.to_dict(), stream_id, status, reason, history=[f"{now()} {status}: {reason}"])
            self._write(cr)
        return cr, True

    def get(self, cr_id: str) -> ChangeRequest:
        """Return the change request. Raise UnknownChange if there is none, OpsError naming the fix if it is unreadable."""
        path = self._path(cr_id)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise UnknownChange(f"no change request {cr_id}: see `ops cr list`") from None
        except PermissionError as exc:
            raise self._denied(path) from exc
        try:
            raw = json.loads(text)
            known = {f.name for f in fields(ChangeRequest)}  # a newer ops may have added fields
            return ChangeRequest(**{k: v for k, v in raw.items() if k in known})
        except (ValueError, TypeError, AttributeError) as exc:
            raise OpsError(f"{path} is not a readable change request ({exc}); move it out of {self.directory}") from None

    def transition(
        self,
        cr_id: str,
        expected: tuple[str, ...],
        status: str,
        reason: str,
        by: str = "",
        commit: str = "",
        attempts: int | None = None,
    ) -> ChangeRequest:
        """Under the lock, re-read cr_id and, if its status is one of expected, move it to status; return it.

        Raise AlreadyDecided if its status is not among expected (someone
        else moved it first), OpsError on an unknown status.
        """
        if status not in STATUSES:
            raise OpsError(f"unknown status {status!r}")
        with self._locked():
            cr = self.get(cr_id)
            if cr.status not in expected:
                who = f" by {cr.decided_by}" if cr.decided_by else ""
                wanted = " or ".join(expected)
                raise AlreadyDecided(f"change request {cr_id} was already decided: it is {cr.status}{who}, not {wanted}")
            cr.status, cr.reason = status, reason
            cr.decided_by = by or cr.decided_by
            cr.commit = commit or cr.commit
            cr.attempts = cr.attempts if attempts is None else attempts
            cr.history.append(f"{now()} {status}{' by ' + by if by else ''}: {reason}")
            self._write(cr)
        return cr

    def update(self, cr: ChangeRequest, status: str, reason: str, by: str = "", commit: str = "") -> ChangeRequest:
        """Move cr from the status it was read with to status; return the new record. Raise AlreadyDecided if it moved."""
        return self.transition(cr.id, (cr.status,), status, reason, by, commit)

    def attempt_failed(self, cr: ChangeRequest, error: str, limit: int = MAX_ATTEMPTS) -> ChangeRequest:
        """Count a failed try to apply approved cr; after limit tries mark it failed with error. Return the record."""
        with self._locked():
            current = self.get(cr.id)
            if current.status != "approved":
                return current
            current.attempts += 1
            if current.attempts >= limit:
                current.status, current.reason = "failed", f"failed {current.attempts} times; last: {error}"[:2000]
            current.history.append(f"{now()} {current.status}: attempt {current.attempts} failed: {error}"[:2000])
            self._write(current)
        return current

    def count(self, status: str) -> int:
        return int(self.client.scard(self.index_key(status)))

    def list(self, status: str | None = None) -> list[ChangeRequest]:
        """Return change requests (with status, if given), by aggregate and version."""
        ids: set[str] = set()
        for each in [status] if status else STATUSES:
            members: Any = self.client.smembers(self.index_key(each))
            ids |= set(members)
        found = []
        for cr_id in ids:
            try:
                cr = self.get(cr_id)
            except UnknownChange:  # indexed, then its file went: nothing to show
                continue
            except OpsError as exc:  # one unreadable file must not hide (or stop) all the others
                log.warning("%s", exc)
                continue
            if status and cr.status != status:  # the index lagged behind the file: the file wins
                self._index(cr.id, cr.status)
                continue
            found.append(cr)
        return sorted(found, key=lambda c: (c.event["aggregate_id"], c.event["version"], c.created_at))

    def decide(self, cr_id: str, approve: bool, by: str, reason: str = "") -> ChangeRequest:
        """Approve or reject a pending (or failed) change request, atomically; return it.

        Raise UnknownChange if there is none, AlreadyDecided if it is not
        pending or failed (another decider came first).
        """
        verdict = "approved" if approve else "rejected"
        return self.transition(cr_id, DECIDABLE, verdict, reason or f"{verdict} by {by}", by=by, attempts=0)
