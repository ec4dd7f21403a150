"""Notifiers: the dead-man's-switch ping on success and failure, and a broken notifier never hides the outcome."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web

from ops.notify import Notice, NotifyConfig, notify
from tests.fakes.server import ThreadedServer

pytestmark = pytest.mark.integration


def test_ping_marks_success_and_failure_and_an_outage_is_only_reported(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, str]] = []

    async def ping(request: web.Request) -> web.Response:  # healthchecks.io's shape: /<uuid> and /<uuid>/fail
        seen.append((request.path, (await request.read()).decode()))
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ping)
    with ThreadedServer(app) as server, caplog.at_level(logging.INFO):
        url = f"{server.url}/5f6e1c"
        assert notify(NotifyConfig(url), Notice("backup", True, "backup 1: 5 objects")) == []
        assert notify(NotifyConfig(url), Notice("backup", False, "pg_dump was killed")) == []
    assert seen == [("/5f6e1c", "backup 1: 5 objects"), ("/5f6e1c/fail", "pg_dump was killed")]
    assert "backup FAILED: pg_dump was killed" in caplog.text

    problems = notify(NotifyConfig("http://127.0.0.1:9/nothing"), Notice("drill", False, "2 tables differ"))
    assert len(problems) == 1 and problems[0].startswith("notifier ping:")
    assert "drill FAILED: 2 tables differ" in caplog.text  # the log line still went out
