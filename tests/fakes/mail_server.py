"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, optionally with STARTTLS and login.

With `tls=True` it offers STARTTLS with a certificate from a test CA (trustme) and refuses
mail before it; `client_context()` is an SSL context that trusts that CA (and checks the
host name), as a mail client would trust a real server's. With `users`, AUTH LOGIN/PLAIN is
required (over TLS only) and checked against them. With `delay`, each mail is accepted only
after that many seconds, as a slow or distant server would (tests/loopprobe.py needs a wait).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from tests.conftest import free_port


class _Inbox:
    def __init__(self, delay: float = 0.0) -> None:
        self.messages: list[tuple[Envelope, EmailMessage]] = []
        self.changed = threading.Condition()
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Session,
                          envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        mail = message_from_bytes(envelope.content, policy=policy.default)  # type: ignore[arg-type]
        with self.changed:
            self.messages.append((envelope, mail))  # type: ignore[arg-type]
            self.changed.notify_all()
        return "250 Message accepted for delivery"


class MailServer:
    def __init__(self, *, tls: bool = False, users: dict[str, str] | None = None,
                 delay: float = 0.0) -> None:
        self.inbox = _Inbox(delay)
        self.port = free_port()
        self.users = users or {}
        self.logins: list[str] = []
        self._ca = trustme.CA() if tls else None
        kwargs: dict[str, Any] = {}
        if self._ca is not None:
            server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
            kwargs.update(tls_context=server_context, require_starttls=True)
        if self.users:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=tls,
                          auth_required=True)
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port,
                                     server_hostname="127.0.0.1", **kwargs)

    def _authenticate(self, server: Any, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(user) == password:
                self.logins.append(user)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def write_ca(self, path: str) -> str:
        """The test CA's certificate as a PEM file, for a client in another process."""
        assert self._ca is not None, "only a tls=True server has a CA"
        self._ca.cert_pem.write_to_path(path)
        return path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self._ca is not None:
            self._ca.configure_trust(context)
        return context

    def start(self) -> MailServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> MailServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[EmailMessage]:
        """Wait (with a deadline) until `count` mails have arrived; return all of them."""
        deadline = time.monotonic() + timeout
        with self.inbox.changed:
            while len(self.inbox.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(self.inbox.messages)} of {count} mails "
                                         f"arrived in {timeout}s")
                self.inbox.changed.wait(remaining)
            return [mail for _, mail in self.inbox.messages]

    @property
    def envelopes(self) -> list[Envelope]:
        return [envelope for envelope, _ in self.inbox.messages]
