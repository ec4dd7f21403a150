"""A dead-man's-switch ping: GET <url> on success, <url>/fail on failure (healthchecks.io's convention).

The service alarms when a ping is late, so a backup that never ran is caught
too, which no notifier on this VM can do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from ops.notify import Notice, NotifyConfig

NAME = "ping"


def send(notice: Notice, config: NotifyConfig) -> None:
    if not config.ping_url:
        return
    url = config.ping_url.rstrip("/") + ("" if notice.ok else "/fail")
    response = httpx.post(url, content=notice.message.encode()[:10_000], timeout=10)
    response.raise_for_status()
