"""The notifiers' own error: a refusal that sending again cannot change."""

from __future__ import annotations

from ops.errors import ServiceError


class PermanentNotifyError(ServiceError):
    """The service refused this notice for good (an SMTP relay's 5xx reply to the message): sending the same notice
    again is refused again, so an outbox drops it instead of keeping it (and what follows it) for a day."""
