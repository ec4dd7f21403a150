"""The observer agent: every event logged, decided, and (when approved) committed to git.

For each event from the consumer group the observer appends it to an
append-only JSONL log, then makes its change request: rejected if its path
is unsafe; held (pending) if its version does not follow the version last
applied to git for its aggregate (a conflict), if the agent asked for
approval, if it deletes, or if it writes outside the auto-approved roots;
approved otherwise. Approved requests are committed by the reconciler; after
each commit the held conflicts of that aggregate are decided again. The
event is acknowledged only after all that, so a crash means a re-delivery,
and the change request id and the commit trailer make the re-delivery a
no-op: nothing lost, nothing applied twice.

One change's failure is that change's: an error in applying it (any
exception, not only ops's own) is counted on its change request, the next
try waits (10 s doubling to 5 min, ``changes.after_failure``), and after
MAX_ATTEMPTS it is marked failed with the error; the observer goes on with
the next. What is not the change's fault leaves it approved, uncounted: a
git lock held in the truth repository (a human's ``git commit``) or a full
disk makes it wait the same way (a lock held for over LOCK_ALERT seconds is
reported through the log notifier, once); the remote or Redis unavailable
or refusing is tried again at the next poll, for as long as it takes.
Nothing ends the loop but a stop.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from ops.errors import OpsError
from ops.events.changes import DEFAULT_GROUP, MAX_ATTEMPTS, STATUSES, AlreadyDecided, ChangeRequest, ChangeStore, due
from ops.events.consumer import Consumer, Stats, trim
from ops.events.publisher import RedisRefused, Streams, explain
from ops.events.reconciler import PushConflict, Reconciler, RemoteUnavailable, RepoLocked, UnsafePath, deferral, target_path
from ops.events.schema import Event
from ops.events.sharing import share_state_dir
from ops.notify import Notice, NotifyConfig, notify

log = logging.getLogger("ops.observer")
CONFLICT = "version conflict"
TAIL_BYTES = 4 << 20  # how much of the log is read at start to recognise re-delivered events
HEARTBEAT_TTL = 30  # seconds: a missing heartbeat means no observer is polling
MAX_BACKOFF = 30  # seconds between polls while Redis refuses commands
LOCK_ALERT = 600  # seconds a git lock may be held in the truth repository before it is reported


def heartbeat_key(stream: str) -> str:
    """Given the stream's name, return the Redis key the observer sets on every poll (expiring after HEARTBEAT_TTL)."""
    return f"{stream}:observer:heartbeat"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Policy:
    roots: tuple[str, ...] = ("tasks", "notes", "projects", "memory", "workflows", "config")
    auto_roots: tuple[str, ...] = ("tasks", "notes", "projects", "memory")


def decide(event: Event, applied: int, policy: Policy) -> tuple[str, str]:
    """Return (status, reason) for event, given the version applied to git for its aggregate."""
    if event.version != applied + 1:
        return "pending", f"{CONFLICT}: the event is version {event.version}, git has {event.aggregate_id} at {applied}"
    if event.metadata.approval_required:
        return "pending", "the agent asked for approval"
    if event.payload.action.endswith("_deleted") or event.payload.action == "delete":
        return "pending", "it deletes a file"
    root = event.payload.resource.removeprefix("/").split("/")[0]
    if root not in policy.auto_roots:
        return "pending", f"{root}/ changes need approval (auto-approved: {', '.join(policy.auto_roots)})"
    return "approved", "low risk: auto-approved"


class EventLog:
    """The append-only JSONL log; an event re-delivered after a crash is not written twice."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._seen: set[str] = set()
        if path.exists():
            with path.open("rb") as handle:
                handle.seek(max(0, path.stat().st_size - TAIL_BYTES))
                for line in handle.read().splitlines():
                    try:
                        self._seen.add(json.loads(line)["event"]["event_id"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line or the cut first one

    def append(self, stream_id: str, event: Event) -> bool:
        if event.event_id in self._seen:
            return False
        line = json.dumps({"stream_id": stream_id, "logged_at": datetime.now(UTC).isoformat(), "event": event.to_dict()})
        with self.path.open("a") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._seen.add(event.event_id)
        return True


class Observer:
    def __init__(
        self,
        client: redis.Redis,
        state_dir: Path,
        reconciler: Reconciler,
        policy: Policy | None = None,
        streams: Streams | None = None,
        on_pending: Callable[[ChangeRequest], None] | None = None,
        poll_decisions: Callable[[ChangeStore], list[str]] | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        clock: Callable[[], datetime] = utc_now,
        group: str | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.clock = clock  # when a failed change may be tried again is decided on this clock
        self._reported_locks: set[tuple[str, float | None]] = set()
        self.client = client
        self.streams = streams or Streams()
        self.policy = policy or Policy()
        self.reconciler = reconciler
        self.log = EventLog(state_dir / "events.jsonl")
        self.state_dir = state_dir
        self.group = group  # the operators' group (OPS_EVENTS_GROUP): the state directory is shared with it at start
        self.store = ChangeStore(state_dir / "change-requests", client, self.streams, group or DEFAULT_GROUP)
        self.applied_key = f"{self.streams.name}:applied"
        self.heartbeat_key = heartbeat_key(self.streams.name)
        self.heartbeat_file = state_dir / "heartbeat"
        self.on_pending = on_pending
        self.poll_decisions = poll_decisions

    def applied_version(self, aggregate_id: str) -> int:
        return int(self.client.hget(self.applied_key, aggregate_id) or 0)

    def handle(self, stream_id: str, event: Event) -> None:
        """The consumer's handler: log, decide, apply. Raise (so the entry stays pending) if git or Redis fails."""
        self.log.append(stream_id, event)
        try:
            target_path(self.reconciler.repo, event.payload.resource, self.policy.roots)
        except UnsafePath as exc:
            self.store.create(event, stream_id, "rejected", str(exc))
            return
        status, reason = decide(event, self.applied_version(event.aggregate_id), self.policy)
        cr, created = self.store.create(event, stream_id, status, reason)
        if cr.status == "approved" and due(cr.next_attempt_at, self.clock()):  # else apply_approved tries it in time
            self.apply(cr)
        elif created and cr.status == "pending":
            self._notify(cr)

    def apply(self, cr: ChangeRequest) -> ChangeRequest:
        """Commit an approved change request; then decide its aggregate's held conflicts again. Return it.

        A failure of the change itself is counted on it (failed after
        max_attempts), never raised; a deferral (a git lock held, a full disk)
        makes it wait, uncounted; raise RemoteUnavailable or a Redis error (it
        stays approved and is tried again).
        """
        try:
            applied = self.reconciler.apply(cr.parsed)
        except UnsafePath as exc:
            return self.store.update(cr, "rejected", str(exc))
        except PushConflict as exc:
            held = self.store.update(cr, "pending", f"{CONFLICT} in git: {exc}")
            self._notify(held)
            return held
        except (RemoteUnavailable, redis.RedisError, RedisRefused):
            raise
        except Exception as exc:  # a lock or a full disk (waits), or the change's own failure (a bug, a path conflict)
            return self._attempt_failed(cr, exc)
        event = cr.parsed
        self.client.hset(self.applied_key, event.aggregate_id, max(self.applied_version(event.aggregate_id), event.version))
        done = self.store.update(cr, "applied", applied.note, commit=applied.commit)
        self._redecide(event.aggregate_id)
        return done

    def _attempt_failed(self, cr: ChangeRequest, exc: Exception) -> ChangeRequest:
        waiting = deferral(exc)  # not the change's fault: not counted
        if waiting is not None:
            error = str(waiting)
            log.warning("change request %s waits (not counted against it): %s", cr.id, error)
            if isinstance(waiting, RepoLocked):
                self._report_lock(waiting)
        else:
            error = str(exc) if isinstance(exc, OpsError) else f"{type(exc).__name__}: {exc}"
            log.warning("change request %s: applying it failed: %s", cr.id, error, exc_info=not isinstance(exc, OpsError))
        done = self.store.attempt_failed(cr, error, self.max_attempts, transient=waiting is not None, at=self.clock())
        if done.status == "failed":
            log.error("change request %s failed after %d attempts; going on with the next: %s", cr.id, done.attempts, error)
            self._notify(done)
        return done

    def _report_lock(self, locked: RepoLocked) -> None:
        """Once per lock, when it has been held for LOCK_ALERT seconds: an error through the log notifier."""
        key = (str(locked.lock), locked.held_since)
        if locked.held_since is None or key in self._reported_locks:
            return
        held = self.clock().timestamp() - locked.held_since
        if held < LOCK_ALERT:
            return
        self._reported_locks.add(key)
        notify(
            NotifyConfig(),
            Notice(
                "observer",
                False,
                f"the truth repository {self.reconciler.repo} has been locked by {locked.lock} for {int(held // 60)} min: "
                "no change is committed until the git process holding it ends (if none is running there, remove "
                "the lock by hand); changes wait, approved",
            ),
        )

    def _redecide(self, aggregate_id: str) -> None:
        for cr in self.store.list("pending"):
            if cr.event["aggregate_id"] != aggregate_id or not cr.reason.startswith(CONFLICT):
                continue
            status, reason = decide(cr.parsed, self.applied_version(aggregate_id), self.policy)
            if status == "approved":
                try:
                    again = self.store.update(cr, "approved", f"decided again after version {cr.event['version'] - 1}: {reason}")
                except AlreadyDecided:
                    continue  # a human decided it meanwhile: theirs stands
                self.apply(again)
                return  # apply() decided the rest again

    def _notify(self, cr: ChangeRequest) -> None:
        """Tell the approvers; an outage is logged (`ops cr list` still shows the request)."""
        log.info("change request %s %s: %s", cr.id, "held" if cr.status == "pending" else cr.status, cr.reason)
        if self.on_pending is None:
            return
        try:
            self.on_pending(cr)
        except Exception as exc:  # Telegram down or answering nonsense: never the observer's end
            log.warning("could not send change request %s: %s", cr.id, exc)

    def _remote_decisions(self) -> int:
        """Take decisions made in Telegram; a Telegram outage is logged and never stops the observer."""
        if self.poll_decisions is None:
            return 0
        try:
            return len(self.poll_decisions(self.store))
        except (redis.RedisError, RedisRefused):
            raise
        except Exception as exc:
            log.warning("telegram: %s", exc)
            return 0

    def apply_approved(self) -> int:
        """Commit the change requests approved since the last look (ops cr approve, Telegram). Return how many tried."""
        done = 0
        for cr in self.store.list("approved"):
            if not due(cr.next_attempt_at, self.clock()):
                continue  # a failed try waits its turn
            try:
                self.apply(cr)
                done += 1
            except RemoteUnavailable as exc:  # the remote is down or slow: every change waits, approved
                log.warning("change request %s not applied yet (tried again next poll): %s", cr.id, exc)
                break
        return done

    def run(
        self,
        stop: threading.Event,
        consumer: Consumer | None = None,
        max_idle_polls: int | None = None,
        keep_last: int = 10_000,
    ) -> Stats:
        """Consume until stop is set (or max_idle_polls empty polls); trim acknowledged entries beyond keep_last."""
        consumer = consumer or Consumer(self.client, self.handle, self.streams)
        prepared = False
        idle = 0
        polls = 0
        backoff = 1
        while not stop.is_set():
            try:
                if not prepared:  # in the loop: Redis may be down or refusing at start too
                    if self.group:  # the directory, then the files (repair): what it writes later inherits the group
                        share_state_dir(self.state_dir, self.group)
                    consumer.ensure_group()
                    self.store.repair()  # group-readable files, and an index that agrees with them after a crash
                    prepared = True
                self.client.set(self.heartbeat_key, datetime.now(UTC).isoformat(), ex=HEARTBEAT_TTL)
                self.heartbeat_file.touch()  # the container's healthcheck reads its age
                handled = consumer.poll(block_ms=1000) + self._remote_decisions() + self.apply_approved()
                if (polls + 1) % 100 == 0:
                    trim(self.client, self.streams, keep_last)
            except (redis.ConnectionError, redis.TimeoutError) as exc:  # Redis restarting: the entries wait (AOF)
                log.warning("redis unavailable, retrying: %s", exc)
                stop.wait(1)
                continue
            except (redis.RedisError, RedisRefused) as exc:  # out of memory, read-only: nothing acknowledged
                log.error("%s; retrying in %d s", exc if isinstance(exc, RedisRefused) else explain(exc, "polling"), backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            except Exception:  # a bug must not become a crash loop: log it whole, wait, go on
                log.exception("the observer's poll failed; retrying in %d s", backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 1
            polls += 1
            idle = 0 if handled else idle + 1
            if max_idle_polls is not None and idle >= max_idle_polls:
                break
        return consumer.stats


def status(observer: Observer) -> dict[str, Any]:
    """What the observer sees: stream length, pending entries, dead letters, change requests by status."""
    counts = {status: n for status in STATUSES if (n := observer.store.count(status))}
    return {
        "stream": observer.streams.name,
        "length": observer.client.xlen(observer.streams.name),
        "dead_letters": observer.client.xlen(observer.streams.dead),
        "observer_heartbeat": observer.client.get(observer.heartbeat_key),
        "change_requests": counts,
    }
