"""Change requests: what the observer decided about each event, as JSON files plus an index in Redis.

A change request's id is ``cr_<event id>``, so a re-delivered event finds
its request instead of making a second one. Status goes pending -> approved
-> applied, or pending -> rejected; an approved request whose push met a
conflict goes back to pending. The file (written atomically) is the
record; one Redis set per status (``<stream>:cr:<status>``) indexes the ids,
so the observer's poll reads the approved ones only, however long the history.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from ops.errors import OpsError
from ops.events.publisher import Streams
from ops.events.schema import Event, parse_event

STATUSES = ("pending", "approved", "applied", "rejected")
CR_ID_PREFIX = "cr_"


class UnknownChange(OpsError):
    """No change request has that id."""


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
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, cr_id: str) -> Path:
        if not cr_id.startswith(CR_ID_PREFIX) or "/" in cr_id or cr_id in (".", ".."):
            raise UnknownChange(f"{cr_id!r} is not a change request id (cr_evt_...): see `ops cr list`")
        return self.directory / f"{cr_id}.json"

    def _write(self, cr: ChangeRequest) -> None:
        with tempfile.NamedTemporaryFile("w", dir=self.directory, prefix=".cr-", delete=False) as tmp:
            json.dump(cr.to_dict(), tmp, indent=2, sort_keys=True)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, self._path(cr.id))
        self._index(cr.id, cr.status)

    def index_key(self, status: str) -> str:
        return f"{self.streams.name}:cr:{status}"

    def _index(self, cr_id: str, status: str) -> None:
        with self.client.pipeline(transaction=True) as tx:
            for other in STATUSES:
                if other != status:
                    tx.srem(self.index_key(other), cr_id)
            tx.sadd(self.index_key(status), cr_id)
            tx.execute()

    def create(self, event: Event, stream_id: str, status: str, reason: str) -> tuple[ChangeRequest, bool]:
        """Return the event's change request, made now with status and reason unless it exists (then created is False)."""
        cr_id = CR_ID_PREFIX + event.event_id
        if self._path(cr_id).exists():
            found = self.get(cr_id)
            self._index(cr_id, found.status)  # a crash may have come between file and index
            return found, False
        cr = ChangeRequest(cr_id, event.to_dict(), stream_id, status, reason, history=[f"{now()} {status}: {reason}"])
        self._write(cr)
        return cr, True

    def get(self, cr_id: str) -> ChangeRequest:
        """Return the change request. Raise UnknownChange if there is none."""
        path = self._path(cr_id)
        if not path.exists():
            raise UnknownChange(f"no change request {cr_id}: see `ops cr list`")
        return ChangeRequest(**json.loads(path.read_text()))

    def update(self, cr: ChangeRequest, status: str, reason: str, by: str = "", commit: str = "") -> ChangeRequest:
        if status not in STATUSES:
            raise OpsError(f"unknown status {status!r}")
        cr.status, cr.reason = status, reason
        cr.decided_by = by or cr.decided_by
        cr.commit = commit or cr.commit
        cr.history.append(f"{now()} {status}{' by ' + by if by else ''}: {reason}")
        self._write(cr)
        return cr

    def count(self, status: str) -> int:
        return int(self.client.scard(self.index_key(status)))

    def list(self, status: str | None = None) -> list[ChangeRequest]:
        """Return change requests (with status, if given), by aggregate and version."""
        ids: set[str] = set()
        for each in [status] if status else STATUSES:
            members: Any = self.client.smembers(self.index_key(each))
            ids |= set(members)
        found = [self.get(i) for i in ids if self._path(i).exists()]
        return sorted(found, key=lambda c: (c.event["aggregate_id"], c.event["version"], c.created_at))

    def decide(self, cr_id: str, approve: bool, by: str, reason: str = "") -> ChangeRequest:
        """Approve or reject a pending change request. Raise OpsError if it is not pending."""
        cr = self.get(cr_id)
        if cr.status != "pending":
            raise OpsError(f"change request {cr_id} is {cr.status}, not pending: nothing to decide")
        verdict = "approved" if approve else "rejected"
        return self.update(cr, verdict, reason or f"{verdict} by {by}", by=by)
