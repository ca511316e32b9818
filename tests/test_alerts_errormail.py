"""The error log by email, through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from gateway.observe.alerting.config import SmtpNotify
from gateway.observe.alerting.dispatch import RetryPolicy
from gateway.observe.alerting.errormail import ErrorMailHandler
from gateway.observe.alerting.senders import SendError, SmtpSender
from tests.fakes.mail_server import MailServer


@pytest.fixture
def mail() -> Iterator[MailServer]:
    with MailServer() as server:
        yield server  # type: ignore[misc]


def handler_for(server: MailServer, interval: float = 600.0) -> ErrorMailHandler:
    config = SmtpNotify.model_validate({"type": "smtp", "host": "127.0.0.1",
                                        "port": server.port, "starttls": False,
                                        "from": "moltbot@example.com", "to": ["me@example.com"]})
    return ErrorMailHandler(SmtpSender(config), interval, host="box",
                            policy=RetryPolicy(attempts=2, backoff=0.01)).start()


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("tests.errormail")
    log.propagate = False
    yield log
    for h in list(log.handlers):
        log.removeHandler(h)
    log.propagate = True


def test_first_error_at_once_later_ones_gathered_and_flushed_on_close(
        mail: MailServer, logger: logging.Logger) -> None:
    handler = handler_for(mail)
    logger.addHandler(handler)
    logger.warning("not an error: never mailed")
    logger.error("msg_id=m1 skill faq failed")
    first = mail.wait_for(1)[0]
    assert first["Subject"].startswith("[Moltbot] 1 error on box: ")
    assert first["Subject"].endswith("ERROR tests.errormail: msg_id=m1 skill faq failed")
    assert "not an error" not in first.get_content()

    for i in (2, 3, 4):
        logger.error("msg_id=m%d skill faq failed", i)
    handler.close()  # within the interval: gathered into one mail, sent at close
    mails = mail.wait_for(2)
    assert len(mails) == 2
    body = mails[1].get_content()
    assert mails[1]["Subject"].startswith("[Moltbot] 3 errors on box")
    assert all(f"msg_id=m{i} skill faq failed" in body for i in (2, 3, 4))
    assert handler.sent == 2


def test_the_mail_holds_the_traceback_and_no_secret(mail: MailServer,
                                                    logger: logging.Logger) -> None:
    handler = handler_for(mail)
    logger.addHandler(handler)
    try:
        raise RuntimeError("upstream said: token=abcd1234efgh Authorization: Bearer xyz0987654")
    except RuntimeError:
        logger.exception("msg_id=m9 calling the model failed with key mb_%s", "A" * 24)
    body = mail.wait_for(1)[0].get_content()
    handler.close()
    assert "Traceback (most recent call last)" in body and "RuntimeError" in body
    assert "msg_id=m9" in body
    for secret in ("abcd1234efgh", "xyz0987654", "A" * 24):
        assert secret not in body
    assert "mb_***" in body and "token=***" in body


class RefusingMailer:
    """A mail server that is down: every attempt fails the way SmtpSender's do."""

    def __init__(self) -> None:
        self.attempts = 0

    def send_mail(self, subject: str, body: str) -> None:
        self.attempts += 1
        raise SendError("smtp 127.0.0.1:9: ConnectionRefusedError")


def test_its_own_failures_are_logged_not_mailed(logger: logging.Logger,
                                                caplog: pytest.LogCaptureFixture) -> None:
    mailer = RefusingMailer()
    handler = ErrorMailHandler(mailer, 600, policy=RetryPolicy(attempts=1)).start()
    root = logging.getLogger()
    root.addHandler(handler)  # sees the alerting package's own "giving up" error too
    try:
        logger.addHandler(handler)
        logger.error("boom")
        handler.close()  # sends what is gathered: the one "boom", once
    finally:
        root.removeHandler(handler)
    assert mailer.attempts == 1
    assert "error log mail failed, giving up after 1 attempt(s)" in caplog.text


def test_a_handler_without_a_mailer_does_nothing(logger: logging.Logger) -> None:
    handler = ErrorMailHandler(None, 600).start()
    logger.addHandler(handler)
    logger.error("nobody to tell")
    handler.close()
    assert handler.sent == 0
