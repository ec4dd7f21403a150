"""Log every notice: an error line for a failure (cron mails or journald keeps it), info for a success."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ops.notify import Notice, NotifyConfig

NAME = "log"
log = logging.getLogger("ops.jobs")


def send(notice: Notice, config: NotifyConfig) -> None:
    if notice.ok:
        log.info("%s ok: %s", notice.job, notice.message)
    else:
        log.error("%s FAILED: %s", notice.job, notice.message)
