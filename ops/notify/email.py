"""E-mail through an SMTP relay with STARTTLS (smtplib): a notice becomes one message to OPS_SMTP_TO.

The connection is upgraded with STARTTLS before anything else is said, the
relay's certificate checked against the system's CAs (or OPS_SMTP_CA_FILE)
and its name; a relay that offers no STARTTLS is refused rather than sent
the password in clear. Errors name the relay and what failed, never the
password.
"""

from __future__ import annotations

import email.policy
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from ops.errors import ConfigError, ServiceError

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


def deliver(mail: EmailMessage, smtp: SmtpSettings, timeout: float = TIMEOUT) -> None:
    """Send mail through the relay: connect, STARTTLS, log in if a user is set, send.

    Raise ServiceError naming the relay if it cannot be reached, offers no STARTTLS, fails the TLS handshake,
    refuses the login or a recipient.
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
        raise ServiceError(f"{where} refused the login of OPS_SMTP_USER {smtp.user!r}: {exc.smtp_code} {_text(exc)}") from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise ServiceError(f"{where} refused every recipient: {', '.join(exc.recipients)}") from None
    except smtplib.SMTPResponseException as exc:
        raise ServiceError(f"{where} answered {exc.smtp_code} {_text(exc)}") from None
    except ssl.SSLError as exc:
        raise ServiceError(f"{where}: the TLS handshake failed ({exc.reason or exc}); see OPS_SMTP_CA_FILE") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise ServiceError(f"cannot send through {where}: {exc}") from None
    if refused:
        raise ServiceError(f"{where} refused {', '.join(sorted(refused))}; the others got the mail")


def _text(exc: smtplib.SMTPResponseException) -> str:
    raw = exc.smtp_error
    return (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).strip()[:200]


def send(notice: Notice, config: NotifyConfig) -> None:
    if config.email is None:
        return
    deliver(message(notice, config.email), config.email)
