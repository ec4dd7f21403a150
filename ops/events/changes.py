"""Change requests: what the observer decided about each event, as JSON files plus an index in Redis.

A change request's id is ``cr_<event id>``, so a re-delivered event finds
its request instead of making a second one. Status goes pending -> approved
-> applied, or pending -> rejected; an approved request whose push met a
conflict goes back to pending; one that could not be applied after
MAX_ATTEMPTS tries is failed (approving it again retries it). Tries are
spaced (10 s doubling to 5 min, the next time on the request); a try that
met something not the change's fault (a git lock held, a full disk) waits
the same way and is not counted (``after_failure``). The file
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
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from ops.errors import OpsError
from ops.events.publisher import Streams, explain
from ops.events.schema import Event, parse_event
from ops.events.sharing import group_name

STATUSES = ("pending", "approved", "applied", "rejected", "failed")
DECIDABLE = ("pending", "failed")  # what a human may approve or reject (approving a failed one retries it)
CR_ID_PREFIX = "cr_"
log = logging.getLogger("ops.changes")
FILE_MODE = 0o640  # the observer runs as root; operators read change requests through the directory's group
DEFAULT_GROUP = "aistack"  # OPS_EVENTS_GROUP: the operators' group the state directory is shared with
MAX_ATTEMPTS = 6  # counted tries before an approved change that keeps failing is marked failed (about 5 min)
FIRST_DELAY = 10  # seconds before the second try; doubling after each failure ...
MAX_DELAY = 300  # ... up to five minutes


class UnknownChange(OpsError):
    """No change request has that id."""


class AlreadyDecided(OpsError):
    """The change request's status moved since it was read: someone else decided first."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def delay(failures: int) -> timedelta:
    """Given how many tries failed in a row (at least 1), return the wait before the next: 10 s doubling to 5 min."""
    return timedelta(seconds=min(FIRST_DELAY * 2 ** max(failures - 1, 0), MAX_DELAY))


@dataclass(frozen=True)
class Retry:
    """What a failed try makes of an approved change request."""

    status: str  # "approved" (tried again at next_attempt_at) or "failed" (no more tries)
    attempts: int  # counted failures (the change's own)
    deferrals: int  # uncounted failures in a row (not the change's fault)
    next_attempt_at: str  # ISO 8601; "" once failed


def after_failure(attempts: int, deferrals: int, transient: bool, at: datetime, limit: int = MAX_ATTEMPTS) -> Retry:
    """Given a request's counted and uncounted failures before this one, whether this one is transient (not the
    change's fault: not counted) and the time it happened, return the request's next state.

    A counted failure that reaches limit fails the request; every other one
    waits delay(n) after at, n being the failures of its kind in a row.
    """
    if transient:
        return Retry("approved", attempts, deferrals + 1, (at + delay(deferrals + 1)).isoformat(timespec="seconds"))
    attempts += 1
    if attempts >= limit:
        return Retry("failed", attempts, 0, "")
    return Retry("approved", attempts, 0, (at + delay(attempts)).isoformat(timespec="seconds"))


def due(next_attempt_at: str, at: datetime) -> bool:
    """Given a request's next_attempt_at and the time, return whether it may be tried now (an unreadable time: yes)."""
    if not next_attempt_at:
        return True
    try:
        return datetime.fromisoformat(next_attempt_at) <= at
    except ValueError:
        return True


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
    deferrals: int = 0  # tries in a row that met something not its fault (a git lock, a full disk): not counted
    next_attempt_at: str = ""  # no try before this time (ISO 8601); "" = at the next poll

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
    def __init__(self, directory: Path, client: redis.Redis, streams: Streams | None = None, group: str = DEFAULT_GROUP) -> None:
        self.directory = directory
        self.group = group  # the operators' group the directory is shared with (OPS_EVENTS_GROUP), named in errors
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
        join = f"`sudo usermod -aG {self.group} $USER`, then log in again"
        try:
            current = group_name(self.directory.stat().st_gid)
        except OSError:
            current = ""
        if current == self.group:
            return OpsError(
                f"cannot read {path}: permission denied; change requests are readable by the group {self.group}: "
                f"add your user to it ({join}) or run the command with sudo"
            )
        # never advise joining the directory's group as it is: it may be root's
        return OpsError(
            f"cannot read {path}: permission denied; change requests are shared with the group {self.group} "
            f"(OPS_EVENTS_GROUP), but {self.directory} is not yet in it: share it once (`sudo groupadd --system "
            f"{self.group}; sudo chgrp -R {self.group} {self.directory} && sudo chmod g+rxs {self.directory}`), "
            f"add your user to the group ({join}), or run the command with sudo"
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
            if status != cr.status:  # a new status: whatever it waited for before is over
                cr.deferrals, cr.next_attempt_at = 0, ""
            cr.status, cr.reason = status, reason
            cr.decided_by = by or cr.decided_by
            cr.commit = commit or cr.commit
            if attempts is not None:  # a new decision: a fresh count, tried at once
                cr.attempts, cr.deferrals, cr.next_attempt_at = attempts, 0, ""
            cr.history.append(f"{now()} {status}{' by ' + by if by else ''}: {reason}")
            self._write(cr)
        return cr

    def update(self, cr: ChangeRequest, status: str, reason: str, by: str = "", commit: str = "") -> ChangeRequest:
        """Move cr from the status it was read with to status; return the new record. Raise AlreadyDecided if it moved."""
        return self.transition(cr.id, (cr.status,), status, reason, by, commit)

    def attempt_failed(
        self,
        cr: ChangeRequest,
        error: str,
        limit: int = MAX_ATTEMPTS,
        transient: bool = False,
        at: datetime | None = None,
    ) -> ChangeRequest:
        """Record a failed try to apply approved cr at time at (now): counted, or not when transient; spaced by
        after_failure; failed with error once limit counted tries failed. Return the record.
        """
        at = at or datetime.now(UTC)
        with self._locked():
            current = self.get(cr.id)
            if current.status != "approved":
                return current
            retry = after_failure(current.attempts, current.deferrals, transient, at, limit)
            current.attempts, current.deferrals, current.next_attempt_at = retry.attempts, retry.deferrals, retry.next_attempt_at
            if retry.status == "failed":
                current.status, current.reason = "failed", f"failed {current.attempts} times; last: {error}"[:2000]
                line = f"failed: attempt {current.attempts} failed: {error}"
            elif transient:
                # once per spell: a lock held for a day must not grow the file at every try
                line = f"waiting (not counted): {error}; tried again from {retry.next_attempt_at}" if retry.deferrals == 1 else ""
            else:
                line = f"approved: attempt {current.attempts} of {limit} failed: {error}; next try {retry.next_attempt_at}"
            if line:
                current.history.append(f"{now()} {line}"[:2000])
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
