"""A real SMTP server for the e-mail notifier's tests: aiosmtpd on a loopback port, STARTTLS required before
AUTH (LOGIN, PLAIN) and before any mail, a self-signed certificate for 127.0.0.1 whose file the client trusts
(OPS_SMTP_CA_FILE). ``starttls=False`` gives a relay that offers no STARTTLS (and so no AUTH): the notifier must
refuse it. ``refuse`` names recipients it answers 550 (no such user), ``data_reply`` a reply to DATA instead of 250
(a message refused for good), ``echo`` makes a failed login's reply repeat what the client sent (a relay that does
so: the notifier's error must not carry the password)."""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ops.local.processes import LOOPBACK, free_port, wait_until


def self_signed(directory: Path) -> tuple[Path, Path]:
    """Write a key and a self-signed certificate for 127.0.0.1 into directory; return (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aistack test relay")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "relay.crt", directory / "relay.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@dataclass
class Received:
    message: EmailMessage
    rcpt_tos: list[str]
    over_tls: bool
    login: str


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)
    refuse: frozenset[str] = frozenset()
    data_reply: str = ""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else ""
        self.received.append(Received(message, list(envelope.rcpt_tos), session.ssl is not None, login))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on 127.0.0.1:port; ``received`` holds what arrived; ``ca_file`` is the certificate to trust."""

    def __init__(
        self,
        directory: Path,
        user: str = "ops",
        password: str = "relay-password",
        starttls: bool = True,
        refuse: frozenset[str] = frozenset(),
        data_reply: str = "",
        echo: bool = False,
    ) -> None:
        self.user, self.password, self.port, self.echo = user, password, free_port(), echo
        self.ca_file, key = self_signed(directory)
        self.handler = _Handler(refuse=refuse, data_reply=data_reply)
        kwargs: dict[str, Any] = {"auth_require_tls": True, "authenticator": self._authenticate}
        if starttls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.ca_file, key)
            kwargs |= {"tls_context": context, "require_starttls": True, "auth_required": True}
        self._controller = Controller(self.handler, hostname=LOOPBACK, port=self.port, **kwargs)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.user.encode(),
            self.password.encode(),
        )
        # handled=False: aiosmtpd answers a failure itself (535, or message); auth_data becomes session.auth_data
        echoed = None
        if self.echo and not ok and isinstance(auth_data, LoginPassword):
            echoed = f"535 5.7.8 {mechanism} {auth_data.login.decode()}:{auth_data.password.decode()} not accepted"
        return AuthResult(success=ok, handled=False, message=echoed, auth_data=auth_data if ok else None)

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def wait_for(self, count: int, within: float = 10) -> list[Received]:
        """Return what arrived once there are count messages (poll, never sleep)."""
        wait_until(lambda: len(self.received) >= count, within, f"{count} message(s) at the SMTP server")
        return self.received

    def env(self, recipients: str = "me@mail.example.org") -> str:
        """The vps.env lines that send through this server."""
        return (
            f"OPS_SMTP_HOST={LOOPBACK}\nOPS_SMTP_PORT={self.port}\nOPS_SMTP_USER={self.user}\n"
            f"OPS_SMTP_PASSWORD={self.password}\nOPS_SMTP_FROM=ops@vm.example.org\nOPS_SMTP_TO={recipients}\n"
            f"OPS_SMTP_CA_FILE={self.ca_file}\n"
        )

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop serving (a relay that went away); stopping twice is fine."""
        if self._controller._thread is not None:  # aiosmtpd's stop() touches the closed loop a second time
            self._controller.stop()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
