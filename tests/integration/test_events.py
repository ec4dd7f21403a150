"""Events on a real Redis 7 (AOF) and changes committed to real git repositories with a bare remote."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ops.errors import OpsError
from ops.events.consumer import Consumer, trim
from ops.events.observer import Observer, Policy
from ops.events.publisher import Publisher, VersionConflict
from ops.events.reconciler import Reconciler, UnsafePath, target_path
from ops.events.schema import InvalidEvent, new_event_id
from ops.local.processes import RedisServer, wait_until

pytestmark = pytest.mark.integration


def event(aggregate: str, version: int, resource: str, **over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "event_id": over.pop("event_id", None) or new_event_id(),
        "event_type": "agent.action.completed",
        "aggregate_id": aggregate,
        "version": version,
        "timestamp": "2026-11-22T10:30:00Z",
        "agent": {"model": "claude-3", "agent_id": "agent-main", "session_id": "session-xyz"},
        "payload": {
            "action": over.pop("action", "task_created"),
            "resource": resource,
            "data": over.pop("data", {"title": f"v{version}"}),
            "reasoning": "User requested it",
        },
        "metadata": {"correlation_id": "req-789", "approval_required": over.pop("approval_required", False)},
    }
    assert not over
    return raw


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare remote with one commit on main, like the truth repository's origin."""
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    seed = tmp_path / "seed"
    subprocess.run(["git", "clone", "-q", str(bare), str(seed)], check=True, capture_output=True)
    (seed / "README.md").write_text("truth\n")
    git(seed, "add", ".")
    git(seed, "-c", "user.name=h", "-c", "user.email=h@example.com", "commit", "-q", "-m", "start")
    git(seed, "push", "-q", "origin", "HEAD:main")
    return bare


@pytest.fixture
def work(tmp_path: Path, remote: Path) -> Path:
    clone = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True, capture_output=True)
    return clone


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield c
    c.close()


def observer_for(client: redis.Redis, work: Path, tmp_path: Path) -> Observer:
    return Observer(client, tmp_path / "state", Reconciler(work, Policy().roots))


class QuickConsumer(Consumer):
    """The observer's consumer, waiting 50 ms instead of the observer's 1 s for entries that are not there yet.

    What was published before a drain is read at once whatever the wait, so only the last, idle poll of a drain
    (and every retry a test makes due at once) waits: 50 ms each, not a second.
    """

    def poll(self, block_ms: int = 2000) -> int:
        return super().poll(block_ms=min(block_ms, 50))


def drain(observer: Observer, consumer: Consumer | None = None) -> None:
    """Run the observer until a poll finds nothing to do: every change published so far is handled."""
    consumer = consumer or QuickConsumer(observer.client, observer.handle, observer.streams)
    observer.run(threading.Event(), consumer, max_idle_polls=1)


def subjects(remote: Path) -> list[str]:
    return git(remote, "log", "--format=%s", "main").splitlines()


def test_publish_is_idempotent_and_checks_the_version_atomically(client: redis.Redis) -> None:
    publisher = Publisher(client)
    first = event("project:life-os", 1, "/tasks/t-1")
    published = publisher.publish(first)
    again = publisher.publish(first)  # a retried publish
    assert again.duplicate and again.stream_id == published.stream_id
    assert client.xlen("agent_events") == 1
    with pytest.raises(VersionConflict, match="the event has version 1, the aggregate is at 1"):
        publisher.publish(event("project:life-os", 1, "/tasks/t-2"))
    with pytest.raises(VersionConflict, match="expected 2"):
        publisher.publish(event("project:life-os", 3, "/tasks/t-2"))
    assert publisher.publish(event("project:life-os", 2, "/tasks/t-2")).duplicate is False
    # XREAD sees them (the plan's check)
    read: Any = client.xread({"agent_events": "0"})
    assert [f["version"] for _, f in read[0][1]] == ["1", "2"]

    # concurrent writers of one aggregate: exactly one wins each version
    outcomes: list[str] = []

    def writer() -> None:
        try:
            publisher.publish(event("project:race", 1, "/tasks/r"))
            outcomes.append("ok")
        except VersionConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda e: e.pop("aggregate_id"), "aggregate_id"),
        (lambda e: e.update(version=0), "version"),
        (lambda e: e.update(version="3"), "version"),
        (lambda e: e.update(timestamp="2026-11-22 10:30"), "timestamp"),
        (lambda e: e["agent"].pop("model"), "agent.model"),
        (lambda e: e["payload"].update(data=[1]), "payload.data"),
        (lambda e: e["metadata"].update(approval_required="no"), "metadata.approval_required"),
        (lambda e: e.update(extra=1), "extra"),
        (lambda e: e.update(event_id="42"), "event_id"),
    ],
)
def test_invalid_events_are_refused_naming_the_field(client: redis.Redis, change: Any, field: str) -> None:
    raw = event("project:life-os", 1, "/tasks/t")
    change(raw)
    with pytest.raises(InvalidEvent) as caught:
        Publisher(client).publish(raw)
    assert caught.value.field == field
    assert client.exists("agent_events") == 0


def test_low_risk_changes_commit_high_risk_ones_wait(client: redis.Redis, work: Path, remote: Path, tmp_path: Path) -> None:
    publisher, observer = Publisher(client), observer_for(client, work, tmp_path)
    publisher.publish(event("project:life-os", 1, "/tasks/task-456", data={"title": "Buy milk"}))
    publisher.publish(event("project:life-os", 2, "/workflows/router", data={"nodes": 3}))
    publisher.publish(event("project:life-os", 3, "/tasks/task-457"))
    drain(observer)

    assert subjects(remote) == ["task_created: /tasks/task-456", "start"]
    body = git(remote, "log", "-1", "--format=%B", "main")
    assert "Event-Id: evt_" in body and "Aggregate: project:life-os@1" in body
    assert git(remote, "show", "main:tasks/task-456.json") == '{\n  "title": "Buy milk"\n}'
    pending = {c.event["version"]: c.reason for c in observer.store.list("pending")}
    assert pending[2].startswith("workflows/ changes need approval")
    assert pending[3] == "version conflict: the event is version 3, git has project:life-os at 1"

    # approving v2 commits it, then v3 (held only by the conflict) is decided again and committed
    observer.store.decide(f"cr_{observer.store.list('pending')[0].event['event_id']}", True, "alice")
    drain(observer)
    assert subjects(remote) == [
        "task_created: /tasks/task-457",
        "task_created: /workflows/router",
        "task_created: /tasks/task-456",
        "start",
    ]
    assert {c.status for c in observer.store.list()} == {"applied"}
    lines = (tmp_path / "state" / "events.jsonl").read_text().splitlines()
    assert len(lines) == 3  # every event logged once


def test_no_commit_when_nothing_changed(client: redis.Redis, work: Path, remote: Path, tmp_path: Path) -> None:
    publisher, observer = Publisher(client), observer_for(client, work, tmp_path)
    publisher.publish(event("project:p", 1, "/notes/today.md", data={"content": "hello"}))
    publisher.publish(event("project:p", 2, "/notes/today.md", data={"content": "hello\n"}))
    drain(observer)
    assert subjects(remote) == ["task_created: /notes/today.md", "start"]
    assert [c.status for c in observer.store.list()] == ["applied", "applied"]
    assert observer.applied_version("project:p") == 2


@pytest.mark.parametrize(
    "resource",
    ["/etc/passwd", "//etc/passwd", "/tasks/../.git/config", "/.git/hooks/post-commit", "/tasks/.gitattributes",
     "/tasks/a\\b", "C:/tasks/x", "/tasks/", "/tasks", "/tasks/./x", "/tasks/x y"],
)  # fmt: skip
def test_unsafe_paths_are_refused(work: Path, resource: str) -> None:
    with pytest.raises(UnsafePath):
        target_path(work, resource, Policy().roots)


def test_symlink_tricks_are_refused_and_nothing_is_written(client: redis.Redis, work: Path, remote: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (work / "tasks").symlink_to(outside)
    (work / "notes").mkdir()
    (work / "notes" / "link.json").symlink_to(work / ".git" / "config")
    with pytest.raises(UnsafePath, match="symbolic link"):
        target_path(work, "/tasks/x", Policy().roots)
    with pytest.raises(UnsafePath, match="symbolic link"):
        target_path(work, "/notes/link", Policy().roots)

    (work / "tasks").unlink()
    (work / "notes" / "link.json").unlink()
    (work / "notes").rmdir()
    publisher, observer = Publisher(client), observer_for(client, work, tmp_path)
    publisher.publish(event("project:p", 1, "/../../outside/owned"))
    drain(observer)
    [cr] = observer.store.list()
    assert cr.status == "rejected" and "'..'" in cr.reason
    assert list(outside.iterdir()) == [] and subjects(remote) == ["start"]


def test_a_failing_handler_retries_then_dead_letters_with_the_reason(client: redis.Redis) -> None:
    publisher = Publisher(client)
    publisher.publish(event("project:p", 1, "/tasks/a"))
    client.xadd("agent_events", {"event": "{not json"})
    seen: list[str] = []

    def flaky(stream_id: str, ev: Any) -> None:
        seen.append(ev.event_id)
        raise RuntimeError("disk full")

    consumer = Consumer(client, flaky, max_deliveries=3, claim_idle_ms=0)
    consumer.ensure_group()
    for _ in range(5):
        consumer.poll(block_ms=10)

    assert len(seen) == 3
    dead: Any = client.xrange("agent_events:dead")
    reasons = sorted(f["reason"] for _, f in dead)
    assert reasons[0].startswith("failed 3 deliveries; last: RuntimeError: disk full")
    assert reasons[1].startswith("invalid event: event: is not JSON")
    pending: Any = client.xpending("agent_events", "observer")
    assert pending["pending"] == 0


def test_a_crashed_consumers_entries_are_claimed_and_trim_keeps_unacknowledged(client: redis.Redis) -> None:
    publisher = Publisher(client)
    for v in range(1, 6):
        publisher.publish(event("project:p", v, f"/tasks/t{v}"))
    handled: list[int] = []
    crashed = Consumer(client, lambda s, e: None, name="crashed", batch=3)
    crashed.ensure_group()
    client.xreadgroup("observer", "crashed", {"agent_events": ">"}, count=3)  # read, never acknowledged
    assert trim(client) == 0  # the three are unacknowledged, two undelivered: nothing goes

    survivor = Consumer(client, lambda s, e: handled.append(e.version), name="survivor", claim_idle_ms=0)
    survivor.poll(block_ms=10)  # claims the crashed consumer's three
    survivor.poll(block_ms=10)  # then reads the other two
    assert sorted(handled) == [1, 2, 3, 4, 5]
    assert trim(client) == 5 and client.xlen("agent_events") == 0


def test_observer_killed_mid_batch_restarts_with_no_lost_and_no_duplicate_commits(
    client: redis.Redis, work: Path, remote: Path, tmp_path: Path
) -> None:
    publisher = Publisher(client)
    for v in range(1, 7):
        publisher.publish(event("project:p", v, f"/tasks/t{v}"))
    observer = observer_for(client, work, tmp_path)

    class Killed(BaseException):
        pass

    real_apply = observer.reconciler.apply
    calls = {"n": 0}

    def dying_apply(ev: Any) -> Any:
        calls["n"] += 1
        result = real_apply(ev)  # the commit is pushed ...
        if calls["n"] == 3:
            raise Killed  # ... and the process dies before acknowledging
        return result

    observer.reconciler.apply = dying_apply  # type: ignore[method-assign,assignment]
    with pytest.raises(Killed):
        drain(observer, QuickConsumer(client, observer.handle, name="first", claim_idle_ms=0))
    assert len(subjects(remote)) == 4  # start + 3 commits, the third not acknowledged

    restarted = observer_for(client, work, tmp_path)  # a new process: state from disk and Redis only
    drain(restarted, QuickConsumer(client, restarted.handle, name="second", claim_idle_ms=0))
    assert subjects(remote) == [f"task_created: /tasks/t{v}" for v in range(6, 0, -1)] + ["start"]
    assert len((tmp_path / "state" / "events.jsonl").read_text().splitlines()) == 6
    assert {c.status for c in restarted.store.list()} == {"applied"}


def test_a_push_race_is_redecided_never_forced(client: redis.Redis, work: Path, remote: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(remote), str(other)], check=True, capture_output=True)
    publisher, observer = Publisher(client), observer_for(client, work, tmp_path)
    reconciler = observer.reconciler
    real_sync = reconciler.sync
    pushes = {"n": 0}

    def racing_sync() -> str:
        head = real_sync()
        if pushes["n"] < 2:  # someone pushes right after we synced
            pushes["n"] += 1
            name = "tasks/t1.json" if pushes["n"] == 2 else f"notes/human{pushes['n']}.md"
            (other / name).parent.mkdir(exist_ok=True)
            (other / name).write_text("human edit\n")
            git(other, "add", ".")
            git(other, "-c", "user.name=h", "-c", "user.email=h@example.com", "commit", "-q", "-m", f"human {pushes['n']}")
            git(other, "push", "-q", "origin", "HEAD:main")
        return head

    reconciler.sync = racing_sync  # type: ignore[method-assign]
    publisher.publish(event("project:p", 1, "/tasks/t1"))
    drain(observer)
    # first race: another file, re-applied on top; second race: the same file -> held, not forced
    [cr] = observer.store.list()
    assert cr.status == "pending" and "tasks/t1.json changed in the remote" in cr.reason
    assert git(remote, "show", "main:tasks/t1.json") == "human edit"
    assert subjects(remote)[:2] == ["human 2", "human 1"]


def test_redis_restarted_with_aof_loses_no_event(redis_server: RedisServer, work: Path, remote: Path, tmp_path: Path) -> None:
    c = redis.Redis.from_url(redis_server.url, decode_responses=True)
    publisher = Publisher(c)
    for v in range(1, 21):
        publisher.publish(event("project:p", v, f"/tasks/t{v}"))
    c.close()
    redis_server.halt()  # SIGTERM: Redis flushes the AOF (appendfsync everysec) on shutdown
    redis_server.start()
    c = redis.Redis.from_url(redis_server.url, decode_responses=True)
    assert c.xlen("agent_events") == 20 and int(c.hget("agent_events:versions", "project:p") or 0) == 20
    observer = observer_for(c, work, tmp_path)
    drain(observer)
    assert len(subjects(remote)) == 21
    c.close()


def test_held_changes_are_decided_in_telegram_by_allowed_chats_only(
    client: redis.Redis, work: Path, remote: Path, tmp_path: Path
) -> None:
    from ops.events.telegram import TelegramBot
    from tests.fakes.server import ThreadedServer
    from tests.fakes.telegram import TelegramState, telegram_app

    state = TelegramState(token="123456:test-token")
    with ThreadedServer(telegram_app(state)) as server:
        bot = TelegramBot(state.token, (1001,), api=server.url)
        observer = Observer(
            client,
            tmp_path / "state",
            Reconciler(work, Policy().roots),
            on_pending=bot.notify_pending,
            poll_decisions=lambda store: bot.poll_decisions(store, "agent_events:telegram:offset"),
        )
        publisher = Publisher(client)
        publisher.publish(event("project:p", 1, "/config/limits", data={"max": 5}))
        publisher.publish(event("project:p", 2, "/tasks/t2", approval_required=True))
        drain(observer)
        assert [m["chat_id"] for m in state.sent] == [1001, 1001]
        assert "Held: config/ changes need approval" in state.sent[0]["text"]
        first = state.sent[0]["reply_markup"]["inline_keyboard"][0][0]["callback_data"]

        state.press(666, first, username="mallory")  # not an allowed chat
        drain(observer)
        assert subjects(remote) == ["start"] and state.answers[-1]["text"] == "This chat may not decide changes."

        state.press(1001, first)  # Approve on the first message
        pending = observer.store.list("pending")
        held = next(c.id for c in pending if c.event["version"] == 2)
        state.type(1001, f"/reject {held}")
        drain(observer)
        assert subjects(remote) == ["task_created: /config/limits", "start"]
        statuses = {c.event["version"]: (c.status, c.decided_by) for c in observer.store.list()}
        assert statuses == {1: ("applied", "telegram:alice"), 2: ("rejected", "telegram:alice")}

        wrong = TelegramBot("123456:wrong", (1001,), api=server.url)
        with pytest.raises(OpsError, match="Telegram sendMessage refused: 401 Unauthorized"):
            wrong.notify_pending(observer.store.list()[0])


def test_slices_7_to_9_verify_against_a_running_observer(
    redis_server: RedisServer, work: Path, remote: Path, tmp_path: Path, project: Path
) -> None:
    from ops.config import load_settings
    from ops.events.context import events_config
    from ops.secrets import init_secrets
    from ops.slices import run_verify
    from ops.slices.base import Target
    from tests.conftest import REPO

    (project / "docs").mkdir()
    (project / "docs" / "EVENT_SCHEMA.md").write_text((REPO / "docs" / "EVENT_SCHEMA.md").read_text())
    init_secrets(project / "vps.env.example", project / "vps.env")
    with (project / "vps.env").open("a") as env:
        env.write(f"OPS_REDIS_URL={redis_server.url}\nOPS_EVENTS_REPO={work}\nOPS_EVENTS_STATE_DIR={tmp_path / 'state'}\n")
    settings = load_settings(project)
    target = Target("http://127.0.0.1:9", "sk-x", "http://127.0.0.1:9", "pk", "sk", settings=settings)

    stopped = run_verify(8, target)  # no observer yet
    assert not stopped.ok and stopped.checks[0].name == "observer running" and not stopped.checks[0].ok

    stop = threading.Event()
    observer = events_config(settings).observer()
    runner = threading.Thread(target=observer.run, args=(stop,), daemon=True)
    runner.start()
    try:
        for number in (7, 8, 9):
            report = run_verify(number, target)
            assert report.ok, report.to_dict()
        again = run_verify(9, target)  # a second probe continues the aggregate's history
        assert again.ok, again.to_dict()
    finally:
        stop.set()
        runner.join(10)
    notes = [s for s in subjects(remote) if "ops-slice-9-probe" in s]
    assert len(notes) == 2  # one commit per low-risk probe; the held ones never committed
    assert not (work / "config").exists()  # slice 8's held probes were rejected, not applied


def test_the_cli_publishes_tails_and_decides(redis_server: RedisServer, work: Path, tmp_path: Path, project: Path) -> None:
    import json
    import sys

    from ops.secrets import init_secrets

    init_secrets(project / "vps.env.example", project / "vps.env")
    with (project / "vps.env").open("a") as env:
        env.write(f"OPS_REDIS_URL={redis_server.url}\nOPS_EVENTS_REPO={work}\nOPS_EVENTS_STATE_DIR={tmp_path / 'state'}\n")
    ops = [sys.executable, "-m", "ops.cli"]
    where = ["--project-dir", str(project)]

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ops, *args, *where], input=stdin, capture_output=True, text=True)

    held = event("project:cli", 1, "/config/x", data={"a": 1})
    assert json.loads(run("events", "publish", stdin=json.dumps(held)).stdout)["duplicate"] is False
    bad = run("events", "publish", stdin=json.dumps({**event("project:cli", 2, "/tasks/y"), "version": "2"}))
    assert bad.returncode == 2 and "invalid event: version: must be a whole number" in bad.stderr
    stale = run("events", "publish", stdin=json.dumps(event("project:cli", 1, "/tasks/y")))
    assert stale.returncode == 2 and "version conflict on project:cli" in stale.stderr
    assert held["event_id"] in run("events", "tail").stdout

    assert "handled 1" in run("observer", "run", "--once").stdout
    listed = json.loads(run("cr", "list", "--status", "pending", "--json").stdout)["change_requests"]
    assert [c["id"] for c in listed] == [f"cr_{held['event_id']}"]
    assert run("cr", "approve", "cr_evt_nope12345").returncode == 2
    assert "approved" in run("cr", "approve", listed[0]["id"], "--by", "alice").stdout
    assert "handled 0" in run("observer", "run", "--once").stdout  # it commits the approved one while polling
    assert git(work, "log", "-1", "--format=%s") == "task_created: /config/x"
    status = json.loads(run("events", "status").stdout)
    assert status["change_requests"] == {"applied": 1} and status["dead_letters"] == 0


def test_an_empty_remote_gets_its_first_branch_and_a_broken_one_is_retried_not_conflicted(
    client: redis.Redis, tmp_path: Path
) -> None:
    bare = tmp_path / "empty.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True, capture_output=True)
    observer = observer_for(client, clone, tmp_path)
    publisher = Publisher(client)
    publisher.publish(event("project:e", 1, "/tasks/first"))
    drain(observer)
    assert subjects(bare) == ["task_created: /tasks/first"]

    subprocess.run(["rm", "-rf", str(bare)], check=True)  # the remote is gone: an outage, not a conflict
    publisher.publish(event("project:e", 2, "/tasks/second"))
    consumer = QuickConsumer(client, observer.handle, name="c", claim_idle_ms=0, max_deliveries=2)
    drain(observer, consumer)
    assert consumer.stats.failed >= 1 and "git fetch origin failed" in consumer.stats.errors[0]
    assert [c.status for c in observer.store.list() if c.event["version"] == 2] == ["approved"]  # not held as a conflict


def test_the_observer_rides_out_a_redis_restart(redis_server: RedisServer, work: Path, remote: Path, tmp_path: Path) -> None:
    c = redis.Redis.from_url(redis_server.url, decode_responses=True)
    observer = observer_for(c, work, tmp_path)
    stop = threading.Event()
    runner = threading.Thread(target=observer.run, args=(stop,), daemon=True)
    runner.start()
    try:
        Publisher(c).publish(event("project:r", 1, "/tasks/before"))
        redis_server.halt()
        redis_server.start()  # same port and data directory: the AOF brings the stream back
        Publisher(c).publish(event("project:r", 2, "/tasks/after"))
        wait_until(lambda: len(subjects(remote)) >= 3, 30, "the observer's commits of both events")
    finally:
        stop.set()
        runner.join(10)
    assert runner.is_alive() is False
    assert subjects(remote) == ["task_created: /tasks/after", "task_created: /tasks/before", "start"]
