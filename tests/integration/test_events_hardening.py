"""The event log under faults (issue #10, items 16-19): real Redis, real git, the Telegram Bot API's contract fake.

Each test reproduces a failure found by review: a token in the logs, a bad change
that stopped all processing, a tree left dirty by a crash, racing decisions, a
symlink brought in by the remote, passwords in error messages, unreadable change
requests, and a Redis that refuses writes; then (items 5, 8 and 13 of the second
review) a human's edits or git lock in the truth repository destroyed, failed
tries made back to back, and operators told to join group root.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from ops.errors import OpsError
from ops.events.changes import MAX_ATTEMPTS, AlreadyDecided, ChangeRequest, ChangeStore
from ops.events.consumer import Consumer
from ops.events.observer import Observer, Policy
from ops.events.publisher import Publisher, RedisRefused
from ops.events.reconciler import Reconciler, RepoLocked
from ops.events.schema import parse_event
from ops.local.processes import RedisServer, wait_until
from tests.conftest import require
from tests.integration.test_events import QuickConsumer, client, drain, event, git, observer_for, remote, subjects, work

pytestmark = pytest.mark.integration
__all__ = ["client", "remote", "work"]  # fixtures shared with test_events.py

TOKEN = "123456:AAHsecretTOKENvalue_-x"


@pytest.fixture
def running() -> Iterator[Callable[[Observer, Consumer | None], threading.Thread]]:
    """Start observers in threads; stop and join them at the end."""
    started: list[tuple[threading.Event, threading.Thread]] = []

    def start(observer: Observer, consumer: Consumer | None = None) -> threading.Thread:
        stop = threading.Event()
        thread = threading.Thread(target=observer.run, args=(stop, consumer), daemon=True)
        thread.start()
        started.append((stop, thread))
        return thread

    yield start
    for stop, thread in started:
        stop.set()
        thread.join(15)


class Clock:
    """The observer's clock, moved by the test: when a failed change may be tried again is decided on it."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = datetime.now(UTC)
        self.step = step  # seconds added at every reading (a large step: every waiting change is due at once)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=self.step)
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def observer_at(client: redis.Redis, work: Path, tmp_path: Path, clock: Callable[[], datetime], **kw: Any) -> Observer:
    return Observer(client, tmp_path / "state", Reconciler(work, Policy().roots), clock=clock, **kw)


def only(observer: Observer, aggregate: str) -> ChangeRequest:
    [cr] = [c for c in observer.store.list() if c.event["aggregate_id"] == aggregate]
    return cr


def commit_in_other_clone(remote: Path, tmp_path: Path, change: Callable[[Path], object], message: str) -> None:
    other = tmp_path / "other"
    if not other.exists():
        subprocess.run(["git", "clone", "-q", str(remote), str(other)], check=True, capture_output=True)
    git(other, "pull", "-q", "origin", "main")
    change(other)
    git(other, "add", "-A")
    git(other, "-c", "user.name=h", "-c", "user.email=h@example.com", "commit", "-q", "-m", message)
    git(other, "push", "-q", "origin", "HEAD:main")


# 16: the Telegram bot token in the logs


def test_the_telegram_token_never_reaches_a_log_record(
    redis_server: RedisServer, work: Path, tmp_path: Path, project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ops.events.telegram import TelegramBot
    from ops.secrets import init_secrets
    from tests.fakes.server import ThreadedServer
    from tests.fakes.telegram import TelegramState, telegram_app

    state = TelegramState(token=TOKEN)
    with ThreadedServer(telegram_app(state)) as server:
        # the observer as it runs in its container: `ops observer run`, logging to stderr
        init_secrets(project / "vps.env.example", project / "vps.env")
        with (project / "vps.env").open("a") as env:
            env.write(
                f"OPS_REDIS_URL={redis_server.url}\nOPS_EVENTS_REPO={work}\nOPS_EVENTS_STATE_DIR={tmp_path / 'state'}\n"
                f"OPS_TELEGRAM_BOT_TOKEN={TOKEN}\nOPS_TELEGRAM_CHAT_IDS=1001\nOPS_TELEGRAM_API={server.url}\n"
            )
        c = redis.Redis.from_url(redis_server.url, decode_responses=True)
        Publisher(c).publish(event("project:t", 1, "/config/limits", data={"max": 5}))  # held: sendMessage
        run = subprocess.run(
            [sys.executable, "-m", "ops.cli", "observer", "run", "--once", "--project-dir", str(project)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert len(state.sent) == 1  # it did talk to the Bot API (sendMessage, getUpdates)
        assert "change request cr_evt_" in run.stderr  # it logs at INFO ...
        assert TOKEN not in run.stderr + run.stdout  # ... but never the token
        assert TOKEN.split(":")[1] not in run.stderr

        # defence in depth: even with the HTTP client logging at DEBUG, every record is redacted
        from ops.events.logs import configure_logging

        levels = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
        configure_logging()
        try:
            for name in levels:
                logging.getLogger(name).setLevel(logging.DEBUG)
            with caplog.at_level(logging.DEBUG):
                bot = TelegramBot(TOKEN, (1001,), api=server.url)
                store = ChangeStore(tmp_path / "state" / "change-requests", c)
                bot.poll_decisions(store, "agent_events:telegram:offset")
                with pytest.raises(OpsError) as refused:
                    TelegramBot(TOKEN, (1001,), api="http://127.0.0.1:9").call("getMe")  # nothing listens there
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
        httpx_lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
        assert any("bot<redacted>/getUpdates" in line for line in httpx_lines), httpx_lines
        assert not [r for r in caplog.records if TOKEN in r.getMessage() or TOKEN in (r.exc_text or "")]
        assert TOKEN not in str(refused.value)
        c.close()


# 17: one bad change stopped every change


def test_a_change_that_cannot_be_applied_fails_alone_and_the_next_still_commits(
    client: redis.Redis, work: Path, remote: Path, tmp_path: Path
) -> None:
    clock = Clock(step=3600)  # every failed try is due again at once: the spacing has its own test
    publisher, observer = Publisher(client), observer_at(client, work, tmp_path, clock)
    publisher.publish(event("project:a", 1, "/tasks/x.md", data={"content": "a file"}))
    publisher.publish(event("project:b", 1, "/tasks/x.md/y.md", data={"content": "x.md must be a directory"}))
    for _ in range(MAX_ATTEMPTS):
        drain(observer)  # both auto-approved: the second can never be written
    publisher.publish(event("project:c", 1, "/tasks/z.md", data={"content": "later, good"}))
    drain(observer)

    by_aggregate = {c.event["aggregate_id"]: c for c in observer.store.list()}
    bad = by_aggregate["project:b"]
    assert bad.status == "failed" and bad.attempts == MAX_ATTEMPTS
    assert "tasks/x.md is a file, not a directory" in bad.reason
    assert by_aggregate["project:c"].status == "applied"
    assert subjects(remote) == ["task_created: /tasks/z.md", "task_created: /tasks/x.md", "start"]
    assert observer.store.list("approved") == []  # nothing left to retry at every poll

    # a human fixes the cause and approves the failed change again: it is retried, and commits
    commit_in_other_clone(remote, tmp_path, lambda repo: git(repo, "rm", "-q", "tasks/x.md"), "make room")
    observer.store.decide(bad.id, True, "alice")
    drain(observer)
    assert observer.store.get(bad.id).status == "applied"
    assert git(remote, "show", "main:tasks/x.md/y.md") == "x.md must be a directory"


def test_an_unexpected_exception_in_applying_never_ends_the_loop(
    client: redis.Redis, work: Path, remote: Path, tmp_path: Path, running: Any
) -> None:
    observer = observer_at(client, work, tmp_path, Clock(step=3600))  # every failed try due at once
    real_apply = observer.reconciler.apply

    def apply(ev: Any) -> Any:
        if ev.payload.resource == "/tasks/cursed":
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")  # what no handler expected
        return real_apply(ev)

    observer.reconciler.apply = apply  # type: ignore[method-assign,assignment]
    thread = running(observer, QuickConsumer(client, observer.handle, claim_idle_ms=0))
    publisher = Publisher(client)
    publisher.publish(event("project:u", 1, "/tasks/cursed"))
    wait_until(lambda: [c.status for c in observer.store.list()] == ["failed"], 30, "the cursed change's failure")
    publisher.publish(event("project:v", 1, "/tasks/fine"))
    wait_until(lambda: "task_created: /tasks/fine" in subjects(remote), 30, "the next change's commit")
    assert thread.is_alive()
    [cursed] = [c for c in observer.store.list() if c.event["aggregate_id"] == "project:u"]
    assert cursed.reason.startswith(f"failed {MAX_ATTEMPTS} times; last: UnicodeDecodeError")


def test_a_push_that_times_out_is_retried_not_failed(
    client: redis.Redis, work: Path, remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ops.events import reconciler

    hook = remote / "hooks" / "pre-receive"
    # a remote that hangs past the timeout (0.5 s here), then refuses (each try waits the hook out: the timeout kills git push,
    # and its receive-pack holds the output pipe until the hook ends)
    hook.write_text("#!/bin/sh\nsleep 1\nexit 1\n")
    hook.chmod(0o755)
    monkeypatch.setattr(reconciler, "GIT_TIMEOUT", 0.5)
    publisher, observer = Publisher(client), observer_for(client, work, tmp_path)
    publisher.publish(event("project:s", 1, "/tasks/slow"))
    consumer = QuickConsumer(client, observer.handle, claim_idle_ms=0)
    for _ in range(4):  # more polls than the attempts a failing change gets
        observer.run(threading.Event(), consumer, max_idle_polls=1)
    [cr] = observer.store.list()
    assert cr.status == "approved" and cr.attempts == 0  # the remote's fault, not the change's
    assert "took longer than 0.5 s" in consumer.stats.errors[0]

    hook.unlink()
    monkeypatch.setattr(reconciler, "GIT_TIMEOUT", 120)
    drain(observer)
    assert observer.store.list()[0].status == "applied"
    assert subjects(remote) == ["task_created: /tasks/slow", "start"]


# 17a: a dirty tree after a crash; racing decisions


def test_what_a_crash_or_a_human_left_in_the_truth_tree_is_stashed_never_discarded(
    client: redis.Redis, work: Path, remote: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a human editing the clone the observer commits from (the RUNBOOK puts it in the project directory),
    # or a crash between writing and committing: an untracked file, a modified tracked one, a half-staged one
    (work / "notes").mkdir()
    (work / "notes" / "mine.md").write_text("my draft, never committed\n")
    (work / "README.md").write_text("truth, edited by hand\n")
    (work / "LICENSE").write_text("staged, not committed\n")
    git(work, "add", "LICENSE")

    publisher, observer = Publisher(client), observer_for(client, work, tmp_path)
    published = event("project:d", 1, "/tasks/after-crash")
    publisher.publish(published)
    with caplog.at_level(logging.WARNING, logger="ops.reconciler"):
        drain(observer)
    assert subjects(remote) == ["task_created: /tasks/after-crash", "start"]
    assert git(remote, "show", "main:README.md") == "truth"  # nothing of the human's was committed ...
    assert "saved in the stash" in caplog.text and "not discarded" in caplog.text and "notes/mine.md" in caplog.text

    [stash] = git(work, "stash", "list", "--format=%gs").splitlines()  # ... nor lost: it is in a stash
    assert "observer-recover " in stash and published["event_id"] in stash
    git(work, "stash", "pop", "--quiet")
    assert (work / "notes" / "mine.md").read_text() == "my draft, never committed\n"
    assert (work / "README.md").read_text() == "truth, edited by hand\n"
    assert (work / "LICENSE").read_text() == "staged, not committed\n"
    assert (work / "tasks" / "after-crash.json").is_file()  # on top of the observer's commit


def test_a_held_git_lock_delays_the_change_is_reported_and_never_removed(
    client: redis.Redis, work: Path, remote: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a human's `git commit` waiting for its editor holds index.lock, here for twenty minutes already
    lock = work / ".git" / "index.lock"
    lock.write_text("")
    os.utime(lock, (time.time() - 1200, time.time() - 1200))
    (work / "mine.txt").write_text("the human's file\n")

    clock = Clock()
    publisher, observer = Publisher(client), observer_at(client, work, tmp_path, clock)
    publisher.publish(event("project:lock", 1, "/tasks/waits"))
    with caplog.at_level(logging.WARNING):
        drain(observer)
        drain(observer)  # polled again before its time: not tried again
    cr = only(observer, "project:lock")
    assert (cr.status, cr.attempts, cr.deferrals) == ("approved", 0, 1)  # waiting, not counted, not failed
    assert datetime.fromisoformat(cr.next_attempt_at) > clock.now
    assert lock.exists() and (work / "mine.txt").exists()  # nothing of the human's touched
    assert subjects(remote) == ["start"]
    reported = [r for r in caplog.records if r.name == "ops.jobs" and r.levelno == logging.ERROR]
    assert len(reported) == 1 and "locked by" in reported[0].getMessage() and "20 min" in reported[0].getMessage()

    for _ in range(3):  # still held later: waits again, uncounted, reported only once
        clock.advance(301)
        with caplog.at_level(logging.WARNING):
            drain(observer)
    cr = only(observer, "project:lock")
    assert (cr.status, cr.attempts, cr.deferrals) == ("approved", 0, 4)
    assert len([r for r in caplog.records if r.name == "ops.jobs"]) == 1

    lock.unlink()  # the human's commit ends
    clock.advance(301)
    drain(observer)
    assert only(observer, "project:lock").status == "applied"
    assert subjects(remote) == ["task_created: /tasks/waits", "start"]


def test_gits_own_lock_contention_is_a_wait_not_a_failure(work: Path) -> None:
    reconciler = Reconciler(work, Policy().roots)
    (work / "tasks").mkdir()
    (work / "tasks" / "t.json").write_text("{}\n")
    lock = work / ".git" / "index.lock"
    lock.write_text("")  # another git process took the lock after the reconciler looked
    with pytest.raises(RepoLocked, match="another git process holds a lock") as held:
        reconciler.git("add", "--", "tasks/t.json")
    assert held.value.lock == lock and held.value.held_since is not None
    assert lock.exists()


def test_a_local_commit_the_remote_cannot_take_is_kept_under_a_ref(
    client: redis.Redis, work: Path, remote: Path, tmp_path: Path
) -> None:
    # a human commits in the observer's clone without pushing, while the remote moves on
    (work / "README.md").write_text("a local edit\n")
    git(work, "-c", "user.name=h", "-c", "user.email=h@example.com", "commit", "-q", "-am", "local only")
    local = git(work, "rev-parse", "HEAD")
    commit_in_other_clone(remote, tmp_path, lambda repo: (repo / "README.md").write_text("remote edit\n"), "remote moved")

    publisher, observer = Publisher(client), observer_for(client, work, tmp_path)
    publisher.publish(event("project:kept", 1, "/tasks/next"))
    drain(observer)
    assert subjects(remote)[0] == "task_created: /tasks/next"
    kept = git(work, "for-each-ref", "--format=%(objectname)", "refs/observer/unpushed/").splitlines()
    assert kept == [local]  # reachable, not only in the reflog


def test_a_failed_try_is_not_repeated_before_its_time(client: redis.Redis, work: Path, remote: Path, tmp_path: Path) -> None:
    clock = Clock()
    publisher, observer = Publisher(client), observer_at(client, work, tmp_path, clock)
    publisher.publish(event("project:f", 1, "/tasks/f.md", data={"content": "a file"}))
    publisher.publish(event("project:g", 1, "/tasks/f.md/g.md", data={"content": "f.md must be a directory"}))
    drain(observer)
    first = only(observer, "project:g")
    assert (first.status, first.attempts) == ("approved", 1)
    assert first.next_attempt_at == (clock.now + timedelta(seconds=10)).isoformat(timespec="seconds")

    for _ in range(5):  # polls before its time: no second try (three in a row used to fail it within seconds)
        drain(observer)
    clock.advance(9)
    drain(observer)
    assert only(observer, "project:g").attempts == 1

    clock.advance(1)
    drain(observer)
    second = only(observer, "project:g")
    assert (second.status, second.attempts) == ("approved", 2)
    assert second.next_attempt_at == (clock.now + timedelta(seconds=20)).isoformat(timespec="seconds")


def test_two_deciders_at_once_exactly_one_wins(client: redis.Redis, tmp_path: Path) -> None:
    directory = tmp_path / "state" / "change-requests"
    stores = [ChangeStore(directory, redis.Redis(connection_pool=client.connection_pool)) for _ in range(2)]
    rounds = 30
    ids = []
    for n in range(rounds):
        cr, _ = stores[0].create(parse_event(event(f"project:r{n}", 1, "/config/x")), "0-1", "pending", "held")
        ids.append(cr.id)
    outcomes: dict[str, list[str]] = {cr_id: [] for cr_id in ids}

    def decider(store: ChangeStore, approve: bool, barrier: threading.Barrier) -> None:
        for cr_id in ids:
            barrier.wait()
            try:
                store.decide(cr_id, approve, "alice" if approve else "bob")
                outcomes[cr_id].append("approved" if approve else "rejected")
            except AlreadyDecided as exc:
                assert "already decided" in str(exc)
                outcomes[cr_id].append("lost")

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=decider, args=(stores[i], i == 0, barrier)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for cr_id, seen in outcomes.items():
        assert sorted(seen) in (["approved", "lost"], ["lost", "rejected"]), seen  # exactly one winner ...
        [winner] = [s for s in seen if s != "lost"]
        record = stores[0].get(cr_id)
        assert record.status == winner and len(record.history) == 2  # ... and the record is the winner's alone


def test_an_unreadable_change_request_or_a_lagging_index_stops_nothing(
    client: redis.Redis, work: Path, remote: Path, tmp_path: Path
) -> None:
    publisher, observer = Publisher(client), observer_for(client, work, tmp_path)
    publisher.publish(event("project:h", 1, "/config/held", data={"a": 1}))
    publisher.publish(event("project:k", 1, "/config/kept", data={"b": 2}))
    drain(observer)
    held, kept = (c.id for c in sorted(observer.store.list("pending"), key=lambda c: c.event["aggregate_id"]))
    (observer.store.directory / f"{kept}.json").write_text('{"id": "cr_evt_torn", "ev')  # unreadable
    with pytest.raises(OpsError, match=f"{kept}.json is not a readable change request"):
        observer.store.get(kept)
    # a decision whose index update never happened (Redis refused it, or a crash): the file says approved
    observer.store.decide(held, True, "alice")
    client.srem("agent_events:cr:approved", held)
    client.sadd("agent_events:cr:pending", held)

    drain(observer_for(client, work, tmp_path))  # a restarted observer: the file is the record
    assert "task_created: /config/held" in subjects(remote)
    assert [c.id for c in observer.store.list()] == [held]  # the unreadable one is skipped, not fatal
    assert observer.store.get(held).status == "applied"


# 18: a symlink brought in by the remote


@pytest.mark.parametrize(
    ("link", "resource"),
    [("tasks", "/tasks/a.md"), ("notes/n.md", "/notes/n.md")],
    ids=["directory-link", "file-link"],
)
def test_a_symlink_the_remote_brings_in_is_never_written_through(
    client: redis.Redis, work: Path, remote: Path, tmp_path: Path, link: str, resource: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()

    def add_link(repo: Path) -> None:
        (repo / link).parent.mkdir(parents=True, exist_ok=True)
        (repo / link).symlink_to(outside if link == "tasks" else outside / "n.md")

    commit_in_other_clone(remote, tmp_path, add_link, "someone commits a symlink")
    publisher, observer = Publisher(client), observer_for(client, work, tmp_path)
    publisher.publish(event("project:l", 1, resource, data={"content": "owned"}))
    drain(observer)  # the work tree syncs to the remote only while applying: the link arrives then
    [cr] = observer.store.list()
    assert cr.status == "rejected" and "symbolic link" in cr.reason
    assert list(outside.iterdir()) == []
    assert subjects(remote) == ["someone commits a symlink", "start"]


# 19: passwords in errors; change requests an operator cannot read


@pytest.mark.parametrize(
    "url",
    ["redis://:pa/ss-WORD@127.0.0.1:6379/0", "redis://:pa#ss-WORD@127.0.0.1:6379/0", "redis://:ss-WORD@127.0.0.1:99999/0",
     "http://:ss-WORD@127.0.0.1:6379/0", "ss-WORD"],
)  # fmt: skip
def test_a_malformed_redis_url_is_named_without_its_password(project: Path, url: str) -> None:
    from ops.secrets import init_secrets

    init_secrets(project / "vps.env.example", project / "vps.env")
    with (project / "vps.env").open("a") as env:
        env.write(f"OPS_REDIS_URL='{url}'\n")
    for command in (["events", "publish"], ["cr", "list"]):
        run = subprocess.run(
            [sys.executable, "-m", "ops.cli", *command, "--project-dir", str(project)],
            input=json.dumps(event("project:p", 1, "/tasks/t")),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 2 and run.stderr.startswith("error: OPS_REDIS_URL"), run.stderr
        assert "ss-WORD" not in run.stderr and "Traceback" not in run.stderr


def test_a_malformed_postgres_url_is_named_without_its_password(project: Path) -> None:
    from ops.backup.context import PostgresAccess
    from ops.errors import ConfigError

    for url in ("postgresql://postgres:pa/ss-WORD@127.0.0.1:5432", "mysql://postgres:ss-WORD@127.0.0.1:5432"):
        with pytest.raises(ConfigError, match=r"^OPS_POSTGRES_URL") as caught:
            PostgresAccess.from_url(url)
        assert "ss-WORD" not in str(caught.value)


NOBODY = 65534  # uid and gid of nobody / nogroup on Debian


def as_nobody(code: str, groups: list[int], env: dict[str, str]) -> dict[str, Any]:
    """Run code in a child that imports ops as root, then drops to uid nobody with groups; return its JSON answer."""
    prelude = (
        "import json, os, sys, redis\n"
        "from pathlib import Path\n"
        "from ops.events.changes import ChangeStore\n"
        "from ops.errors import OpsError\n"
        "client = redis.Redis.from_url(os.environ['URL'], decode_responses=True)\n"
        "client.ping()  # connected (and redis-py's lazy imports done) while it can still read root's files\n"
        f"os.setgroups({groups!r}); os.setgid({groups[0]}); os.setuid({NOBODY})\n"
        "store = ChangeStore(Path(os.environ['DIR']), client, group=os.environ['GROUP'])\n"
        "try:\n"
        "    answer = {'ok': %s}\n"
        "except OpsError as exc:\n"
        "    answer = {'error': str(exc)}\n"
        "print(json.dumps(answer))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", prelude % code], capture_output=True, text=True, env={**os.environ, **env}, timeout=60
    )
    assert run.returncode == 0, run.stderr  # never a traceback
    answer: dict[str, Any] = json.loads(run.stdout)
    return answer


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory other users can reach (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="ops-events-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base)


@pytest.fixture
def operators_group() -> Iterator[str]:
    """A name for the operators' group (OPS_EVENTS_GROUP) that no group has yet; the group is deleted at the end."""
    require(os.geteuid() == 0, "root (to write as the observer does, to create a group and to become nobody)")
    name = f"ops{uuid.uuid4().hex[:10]}"
    yield name
    subprocess.run(["groupdel", name], capture_output=True, check=False)


def test_an_operator_in_the_state_directorys_group_reads_change_requests(
    redis_server: RedisServer, shared_dir: Path, operators_group: str, project: Path, work: Path
) -> None:
    import grp
    import stat

    from ops.config import load_settings
    from ops.secrets import init_secrets
    from ops.slices import slice_07

    state = shared_dir / "state"
    directory = state / "change-requests"
    directory.mkdir(parents=True)  # what Docker makes of a missing bind mount: root's, in group root
    os.chown(state, 0, 0)
    os.chown(directory, 0, 0)
    c = redis.Redis.from_url(redis_server.url, decode_responses=True)
    observer_store = ChangeStore(directory, c, group=operators_group)  # the observer, as root
    cr, _ = observer_store.create(parse_event(event("project:o", 1, "/config/x")), "0-1", "pending", "held")
    env = {"DIR": str(directory), "URL": redis_server.url, "GROUP": operators_group}

    # not shared yet: the operator is told the dedicated group and how to share, never to join group root
    unshared = as_nobody(f"store.get({cr.id!r}).status", [NOBODY], env)["error"]
    assert f"cannot read {directory / cr.id}.json" in unshared and f"usermod -aG {operators_group} " in unshared
    assert f"chgrp -R {operators_group} {directory}" in unshared and "sudo" in unshared
    assert "-aG root" not in unshared

    # slice 7, as root, before the observer first starts: the group is created and the directory shared
    init_secrets(project / "vps.env.example", project / "vps.env")
    with (project / "vps.env").open("a") as handle:
        handle.write(f"OPS_REDIS_URL={redis_server.url}\nOPS_EVENTS_STATE_DIR={state}\nOPS_EVENTS_GROUP={operators_group}\n")
    changed = slice_07.install(load_settings(project))
    gid = grp.getgrnam(operators_group).gr_gid
    assert f"created the group {operators_group}" in changed
    for shared in (state, directory):
        assert shared.stat().st_gid == gid and shared.stat().st_mode & stat.S_ISGID, oct(shared.stat().st_mode)
    # the observer, at start, gives the group to what it wrote before; what it writes next inherits it
    observer = Observer(c, state, Reconciler(work, Policy().roots), group=operators_group)
    drain(observer)
    later, _ = observer.store.create(parse_event(event("project:o2", 1, "/config/y")), "0-2", "pending", "held")
    assert {p.stat().st_gid for p in directory.glob("cr_*.json")} == {gid}

    member = as_nobody("sorted(c.id for c in store.list())", [gid], env)
    assert member == {"ok": sorted([cr.id, later.id])}
    deciding = as_nobody(f"store.decide({cr.id!r}, True, 'nobody').status", [gid], env)
    assert "cannot write" in deciding["error"] and "sudo" in deciding["error"]
    assert observer_store.get(cr.id).status == "pending"  # nothing half-written

    outsider = as_nobody(f"store.get({cr.id!r}).status", [NOBODY], env)["error"]
    assert f"readable by the group {operators_group}" in outsider and f"usermod -aG {operators_group} " in outsider
    c.close()


# Redis refusing writes (out of memory, a read-only replica)


def test_redis_out_of_memory_is_a_clear_error_and_loses_nothing(
    client: redis.Redis, work: Path, remote: Path, tmp_path: Path, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = Publisher(client)
    client.config_set("maxmemory", "1mb")  # the fixture runs noeviction, as the stack does
    published: list[int] = []
    with pytest.raises(RedisRefused) as refused:
        for version in range(1, 200):
            publisher.publish(event("project:m", version, f"/tasks/t{version}", data={"blob": "x" * 4000}))
            published.append(version)
    assert "Redis is out of memory" in str(refused.value) and "nothing was written" in str(refused.value)
    assert published  # some went in before memory ran out
    assert client.xlen("agent_events") == len(published)  # the refused one left nothing behind
    assert int(client.hget("agent_events:versions", "project:m") or 0) == len(published)

    observer = observer_for(client, work, tmp_path)
    with caplog.at_level(logging.ERROR, logger="ops.observer"):
        thread = running(observer, Consumer(client, observer.handle, claim_idle_ms=0))
        wait_until(lambda: "Redis is out of memory" in caplog.text, 30, "a log naming the problem")
    assert thread.is_alive()
    assert len(subjects(remote)) == 1  # nothing committed, nothing acknowledged meanwhile

    client.config_set("maxmemory", "0")
    wait_until(lambda: len(subjects(remote)) == len(published) + 1, 120, "a commit of every published event")
    wait_until(lambda: client.xpending("agent_events", "observer")["pending"] == 0, 30, "an acknowledgement of every entry")
    assert client.xlen("agent_events:dead") == 0
