"""E-mail through an SMTP relay with STARTTLS (smtplib): a notice becomes one message to OPS_SMTP_TO.

The connection is upgraded with STARTTLS before anything else is said, the
relay's certificate checked against the system's CAs (or OPS_SMTP_CA_FILE)
and its name; a relay that offers no STARTTLS is refused rather than sent
the password in clear. Errors name the relay and what failed, never the
password (not even a relay's reply that echoes it). A relay that takes the
mail for some recipients and refuses others has sent it: the refused ones
are returned as a problem, as mailing everyone again would repeat it to the
others. A 5xx reply to the message itself is a PermanentNotifyError.
"""

from __future__ import annotations

import base64
import email.policy
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from ops.errors import ConfigError, ServiceError
from ops.notify.errors import PermanentNotifyError

if TYPE_CHECKING:
    from ops.config import SmtpSettings
    from ops.notify import Notice, NotifyConfig

NAME = "email"
TIMEOUT = 20.0  # seconds for the connection and each reply
# headers up to RFC 5322's 998 characters a line: folded at 78, a subject starts on the next line and some readers
# (Python's own) keep the fold's space at its start
UNFOLDED = email.policy.default.clone(max_line_length=998)


def message(notice: Notice, smtp: SmtpSettings) -> EmailMessage:
    """Given a notice and the relay's settings, return the e-mail: subject, sender, recipients, the text."""
    from ops.notify import subject_of

    mail = EmailMessage(policy=UNFOLDED)
    mail["Subject"] = subject_of(notice)
    mail["From"] = smtp.sender
    mail["To"] = ", ".join(smtp.recipients)
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = make_msgid(domain=smtp.sender.rpartition("@")[2])
    mail.set_content(notice.message + "\n")
    return mail


def tls_context(smtp: SmtpSettings) -> ssl.SSLContext:
    """Given the relay's settings, return the TLS context: the system's CAs, or OPS_SMTP_CA_FILE's. Raise ConfigError
    if that file cannot be read."""
    try:
        return ssl.create_default_context(cafile=smtp.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"OPS_SMTP_CA_FILE ({smtp.ca_file}) is not a readable CA bundle: {exc}") from exc


def deliver(mail: EmailMessage, smtp: SmtpSettings, timeout: float = TIMEOUT) -> list[str]:
    """Send mail through the relay: connect, STARTTLS, log in if a user is set, send. Return the problems of a send
    that reached only some recipients (those the relay refused, by name): the mail counts as sent, as the others got
    it, and sending it again would mail them twice.

    Raise PermanentNotifyError if the relay refused the message itself with a 5xx reply (its sender, every recipient,
    its data): the same mail would be refused again. Raise ServiceError naming the relay if it cannot be reached,
    offers no STARTTLS, fails the TLS handshake, refuses the login (a fixed password sends it) or answers 4xx. No
    error holds the password, even when the relay's reply echoes it.
    """
    where = f"SMTP relay {smtp.host}:{smtp.port}"
    context = tls_context(smtp)
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=timeout) as client:
            client.ehlo()
            if not client.has_extn("starttls"):
                raise ServiceError(f"{where} offers no STARTTLS: refusing to send mail (and a password) in clear")
            client.starttls(context=context)
            client.ehlo()
            if smtp.user:
                client.login(smtp.user, smtp.password)
            refused = client.send_message(mail)
    except smtplib.SMTPAuthenticationError as exc:
        error = ServiceError(f"{where} refused the login of OPS_SMTP_USER {smtp.user!r}: {exc.smtp_code} {_text(exc)}")
    except smtplib.SMTPRecipientsRefused as exc:
        replies = exc.recipients.values()
        kind = PermanentNotifyError if all(_permanent(code) for code, _ in replies) else ServiceError
        error = kind(f"{where} refused every recipient: {_refusals(exc.recipients)}")
    except smtplib.SMTPResponseException as exc:  # the sender or the data refused, or a reply out of turn
        kind = PermanentNotifyError if _permanent(exc.smtp_code) else ServiceError
        error = kind(f"{where} answered {exc.smtp_code} {_text(exc)}")
    except ssl.SSLError as exc:
        error = ServiceError(f"{where}: the TLS handshake failed ({exc.reason or exc}); see OPS_SMTP_CA_FILE")
    except (smtplib.SMTPException, OSError) as exc:
        error = ServiceError(f"cannot send through {where}: {exc}")
    else:
        if not refused:
            return []
        return [_scrub(f"{where} refused {_refusals(refused)}; the others got the mail: see OPS_SMTP_TO", smtp)]
    raise type(error)(_scrub(str(error), smtp)) from None


def _permanent(code: int) -> bool:
    return 500 <= code < 600  # RFC 5321 4.2.1: 5yz, a permanent negative completion reply


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{to} ({code} {_decoded(reply)})" for to, (code, reply) in sorted(refused.items()))


def _decoded(raw: bytes | str) -> str:
    return (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).strip()[:200]


def _text(exc: smtplib.SMTPResponseException) -> str:
    return _decoded(exc.smtp_error)


def _scrub(text: str, smtp: SmtpSettings) -> str:
    """Given an error's text (a relay's reply in it), return it without the password, plain or as AUTH sent it."""
    if not smtp.password:
        return text
    secrets = (
        f"\0{smtp.user}\0{smtp.password}",  # AUTH PLAIN's string, base64 below
        smtp.password,
    )
    for secret in sorted({*secrets, *(base64.b64encode(s.encode()).decode() for s in secrets)}, key=len, reverse=True):
        text = text.replace(secret, "<password>")
    return text


def send(notice: Notice, config: NotifyConfig) -> list[str]:
    """Mail notice to OPS_SMTP_TO; return the recipients the relay refused (as problems), when others got it.

    Raise what deliver raises.
    """
    if config.email is None:
        return []
    return deliver(message(notice, config.email), config.email)
