"""Result e-mail against a real SMTP server (aiosmtpd on loopback) and the file outbox."""

from __future__ import annotations

import contextlib
import email
import logging
import os
import ssl
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword
from PIL import Image

from integrations.mailer import (
    DEFAULT_SIZE_LIMIT,
    FileMailer,
    MailError,
    SmtpMailer,
    build_files_mail,
    build_result_mail,
    mailer_from_settings,
    plain_login_allowed,
    result_message_id,
    split_by_size,
)
from protocol.settings import Settings
from tests.harness import free_port
from tests.tls import self_signed_cert

pytestmark = pytest.mark.timeout(30)

CUSTOMER = "xiaoming@example.com"
SENDER = "shop@retouch.example"
SUBJECT = "您的修图结果 — 订单 1234"
BODY = "您好,小明:\n附件是修好的图片,请查收。\n—— 修图小店"
PASSWORD = "pa55-w0rd-s3cret"


class Recording:
    """SMTP handler that keeps every envelope it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def parsed(self) -> EmailMessage:
        assert len(self.envelopes) == 1
        message = email.message_from_bytes(self.envelopes[0].content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        return message


class RefusingRecipients(Recording):
    """Refuses every recipient with the given reply."""

    def __init__(self, reply: str) -> None:
        super().__init__()
        self.reply = reply

    async def handle_RCPT(self, server: Any, session: Any, envelope: Envelope, address: str, options: Any) -> str:
        return self.reply


class Logins:
    """aiosmtpd authenticator accepting one user/password pair, remembering who tried."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.tried_users: list[str] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.tried_users.append(data.login.decode())
        ok = data.login.decode() == self.user and data.password.decode() == self.password
        return AuthResult(success=ok, handled=False)


@contextlib.contextmanager
def smtp_server(handler: Any, **kwargs: Any) -> Iterator[Controller]:
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@pytest.fixture()
def result_png(tmp_path: Path) -> Path:
    path = tmp_path / "结果_1234.png"
    Image.new("RGB", (32, 24), (200, 30, 90)).save(path)
    return path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for a self-signed 127.0.0.1 certificate."""
    cert_path, key_path = self_signed_cert(tmp_path_factory.mktemp("tls"))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    return server, ssl.create_default_context(cafile=str(cert_path))


def result_mail(attachment: Path, key: str = "job-42-final") -> EmailMessage:
    return build_result_mail(CUSTOMER, SENDER, SUBJECT, BODY, attachment, result_message_id(key))


def test_result_mail_arrives_with_attachment_chinese_subject_and_our_message_id(result_png: Path) -> None:
    handler = Recording()
    with smtp_server(handler) as server:
        SmtpMailer("127.0.0.1", server.port, None, None, SENDER, timeout_s=5).send(result_mail(result_png))

    envelope = handler.envelopes[0]
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == [CUSTOMER]
    received = handler.parsed()
    assert received["Subject"] == SUBJECT
    assert received["Message-ID"] == "<job-42-final@retouch-shop>"
    assert received.get_body(("plain",)).get_content().replace("\r\n", "\n").strip() == BODY
    [attachment] = list(received.iter_attachments())
    assert attachment.get_content_type() == "image/png"
    assert attachment.get_filename() == "结果_1234.png"
    assert attachment.get_content() == result_png.read_bytes()


def test_an_order_too_heavy_for_one_mail_goes_in_as_few_as_the_server_takes(tmp_path: Path) -> None:
    """An order's results under the server's own limit (EHLO SIZE): one mail of all three is refused, the split
    mails each arrive, every result in one of them, in order."""
    files = []
    for n in (1, 2, 3):
        path = tmp_path / f"J{n}-r1.png"
        path.write_bytes(os.urandom(60_000))  # incompressible: 80 kB once base64-encoded
        files.append((path, f"第{n}张.png"))
    handler = Recording()
    with smtp_server(handler, data_size_limit=200_000) as server:
        mailer = SmtpMailer("127.0.0.1", server.port, None, None, SENDER, timeout_s=5)
        assert mailer.size_limit() == 200_000
        whole = build_files_mail(CUSTOMER, SENDER, SUBJECT, BODY, files, result_message_id("mail.O1.1"))
        with pytest.raises(MailError) as refused:
            mailer.send(whole)
        assert refused.value.permanent
        parts = split_by_size([p.stat().st_size for p, _ in files], mailer.size_limit())
        assert parts == [[0, 1], [2]]
        for n, part in enumerate(parts, start=1):
            mailer.send(build_files_mail(CUSTOMER, SENDER, f"{SUBJECT}({n}/2)", BODY, [files[i] for i in part],
                                         result_message_id(f"mail.O1.1.p{n}")))
    received = [email.message_from_bytes(e.content, policy=policy.default) for e in handler.envelopes]
    assert [m["Subject"] for m in received] == [f"{SUBJECT}(1/2)", f"{SUBJECT}(2/2)"]
    names = [a.get_filename() for m in received for a in m.iter_attachments()]  # type: ignore[attr-defined]
    assert names == ["第1张.png", "第2张.png", "第3张.png"]
    assert FileMailer(tmp_path).size_limit() == DEFAULT_SIZE_LIMIT


@pytest.mark.parametrize(
    ("suffix", "content_type"),
    [(".png", "image/png"), (".jpg", "image/jpeg"), (".JPEG", "image/jpeg"), (".svg", "image/svg+xml"),
     (".psd", "image/vnd.adobe.photoshop")],
)
def test_attachment_type_follows_the_result_format(tmp_path: Path, suffix: str, content_type: str) -> None:
    path = tmp_path / f"result{suffix}"
    path.write_bytes(b"\x00\x01result bytes\xff")
    [attachment] = list(result_mail(path).iter_attachments())
    assert attachment.get_content_type() == content_type
    assert attachment.get_content() == path.read_bytes()


def test_message_id_must_be_ours(result_png: Path) -> None:
    assert result_message_id("job-7.final") == "<job-7.final@retouch-shop>"
    # Keys that sanitise alike stay distinct ids.
    assert result_message_id("job 7/重做").startswith("<job_7___-")
    assert result_message_id("job 7/重做") != result_message_id("job 7/修图")
    with pytest.raises(ValueError):
        build_result_mail(CUSTOMER, SENDER, SUBJECT, BODY, result_png, "job-42")


def test_recipient_refused_with_550_is_permanent(result_png: Path) -> None:
    handler = RefusingRecipients("550 5.1.1 mailbox unavailable")
    with smtp_server(handler) as server, pytest.raises(MailError) as caught:
        SmtpMailer("127.0.0.1", server.port, None, None, SENDER, timeout_s=5).send(result_mail(result_png))
    assert caught.value.permanent
    assert "550" in caught.value.message and CUSTOMER in caught.value.message
    assert handler.envelopes == []


def test_recipient_deferred_with_451_is_temporary(result_png: Path) -> None:
    with smtp_server(RefusingRecipients("451 4.7.1 try again later")) as server, pytest.raises(MailError) as caught:
        SmtpMailer("127.0.0.1", server.port, None, None, SENDER, timeout_s=5).send(result_mail(result_png))
    assert not caught.value.permanent
    assert "451" in caught.value.message


def test_stopped_server_is_a_temporary_error(result_png: Path) -> None:
    with smtp_server(Recording()) as server:
        port = server.port
    with pytest.raises(MailError) as caught:
        SmtpMailer("127.0.0.1", port, None, None, SENDER, timeout_s=5).send(result_mail(result_png))
    assert not caught.value.permanent
    assert f"127.0.0.1:{port}" in caught.value.message


def test_login_and_a_wrong_password_never_shows_the_password(
    result_png: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    handler, logins = Recording(), Logins("shop@retouch.example", PASSWORD)
    with smtp_server(handler, authenticator=logins, auth_require_tls=False) as server:
        SmtpMailer("127.0.0.1", server.port, "shop@retouch.example", PASSWORD, SENDER, timeout_s=5).send(
            result_mail(result_png)
        )
        wrong = SmtpMailer("127.0.0.1", server.port, "shop@retouch.example", "not-" + PASSWORD, SENDER, timeout_s=5)
        with pytest.raises(MailError) as caught:
            wrong.send(result_mail(result_png, "job-43-final"))
    assert set(logins.tried_users) == {"shop@retouch.example"}  # smtplib tries each mechanism before giving up
    assert len(handler.envelopes) == 1
    assert caught.value.permanent and "535" in caught.value.message
    for shown in (caught.value.message, str(caught.value), repr(wrong), caplog.text):
        assert PASSWORD not in shown


def test_non_ascii_password_is_a_permanent_error_that_does_not_show_it(result_png: Path) -> None:
    with smtp_server(Recording(), authenticator=Logins("shop", "x"), auth_require_tls=False) as server:
        mailer = SmtpMailer("127.0.0.1", server.port, "shop", "密码-" + PASSWORD, SENDER, timeout_s=5)
        with pytest.raises(MailError) as caught:
            mailer.send(result_mail(result_png))
    assert caught.value.permanent and "ASCII" in caught.value.message
    assert PASSWORD not in caught.value.message


def test_starttls_is_used_when_the_server_offers_it(
    result_png: Path, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls
    handler, logins = Recording(), Logins("designer", PASSWORD)
    # require_starttls: the server refuses MAIL (and AUTH) until the connection is encrypted.
    with smtp_server(handler, tls_context=server_ctx, require_starttls=True, authenticator=logins) as server:
        mailer = SmtpMailer("127.0.0.1", server.port, "designer", PASSWORD, SENDER, timeout_s=5, ssl_context=client_ctx)
        mailer.send(result_mail(result_png))
    assert handler.parsed()["Message-ID"] == "<job-42-final@retouch-shop>"
    assert logins.tried_users == ["designer"]


def test_implicit_tls_as_on_port_465(result_png: Path, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    handler = Recording()
    with smtp_server(handler, ssl_context=server_ctx) as server:
        mailer = SmtpMailer(
            "127.0.0.1", server.port, None, None, SENDER, timeout_s=5, ssl_context=client_ctx, implicit_tls=True
        )
        mailer.send(result_mail(result_png))
    assert handler.parsed()["Subject"] == SUBJECT
    assert SmtpMailer("smtp.example.com", 465, None, None, SENDER).implicit_tls
    assert not SmtpMailer("smtp.example.com", 587, None, None, SENDER).implicit_tls


def test_password_goes_in_clear_only_to_this_machine() -> None:
    assert plain_login_allowed("127.0.0.1") and plain_login_allowed("::1") and plain_login_allowed("localhost")
    assert not plain_login_allowed("smtp.example.com") and not plain_login_allowed("10.0.0.5")


def test_file_mailer_writes_one_file_per_message_id(tmp_path: Path, result_png: Path) -> None:
    outbox = tmp_path / "outbox-mail"
    mailer = FileMailer(outbox)
    first = mailer.send(result_mail(result_png))
    again = mailer.send(result_mail(result_png))
    other = mailer.send(result_mail(result_png, "job-43-final"))

    assert first == again == outbox / "job-42-final@retouch-shop.eml"
    assert other == outbox / "job-43-final@retouch-shop.eml"
    assert sorted(p.name for p in outbox.iterdir()) == [first.name, other.name]  # no temporary files left
    stored = email.message_from_bytes(first.read_bytes(), policy=policy.default)
    assert stored["Subject"] == SUBJECT
    assert [a.get_content() for a in stored.iter_attachments()] == [result_png.read_bytes()]


def test_file_mailer_names_stay_inside_the_outbox(tmp_path: Path, result_png: Path) -> None:
    mail = result_mail(result_png)
    mail.replace_header("Message-ID", "<../../etc/passwd@evil>")
    path = FileMailer(tmp_path / "outbox").send(mail)
    assert path.parent == tmp_path / "outbox"
    assert "/" not in path.name and path.exists()


def test_mailer_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SMTP_HOST", "SMTP_PORT", "SMTP_USER", "SMTP_PASSWORD", "SMTP_FROM"):
        monkeypatch.delenv(name, raising=False)
    files = mailer_from_settings(Settings(DATA_DIR=tmp_path, _env_file=None))
    assert isinstance(files, FileMailer)
    assert files.dir == tmp_path.resolve() / "outbox-mail" and files.sender == "shop@localhost"

    smtp = mailer_from_settings(Settings(
        DATA_DIR=tmp_path, SMTP_HOST="smtp.example.com", SMTP_USER="shop@example.com", SMTP_PASSWORD=PASSWORD,
        _env_file=None,
    ))
    assert isinstance(smtp, SmtpMailer)
    assert (smtp.host, smtp.port, smtp.user, smtp.sender) == ("smtp.example.com", 587, "shop@example.com",
                                                              "shop@example.com")
    assert PASSWORD not in repr(smtp)
    with_from = mailer_from_settings(Settings(
        DATA_DIR=tmp_path, SMTP_HOST="smtp.example.com", SMTP_FROM="修图小店 <shop@example.com>", _env_file=None,
    ))
    assert with_from.sender == "修图小店 <shop@example.com>"
