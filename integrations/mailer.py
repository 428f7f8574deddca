"""Result e-mail (SPEC §2): build the message, send it over SMTP, or write it to the outbox folder.

Every mail carries a stable ``Message-ID`` (the idempotency key), so a retried send is recognisable
to the receiving side and the file outbox keeps exactly one copy per id.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import mimetypes
import os
import re
import smtplib
import ssl
import tempfile
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING

from persistence import job_files

if TYPE_CHECKING:
    from protocol.settings import Settings

log = logging.getLogger("shop.mailer")

MESSAGE_ID_DOMAIN = "retouch-shop"
DEFAULT_SENDER = "shop@localhost"
OUTBOX_DIRNAME = job_files.MAILS  # where the retention sweep and forget look for them too

# mimetypes does not know PSD everywhere and guesses SVG differently per platform, so the shop's
# result formats are fixed here.
_RESULT_TYPES = {
    ".png": ("image", "png"),
    ".jpg": ("image", "jpeg"),
    ".jpeg": ("image", "jpeg"),
    ".svg": ("image", "svg+xml"),
    ".psd": ("image", "vnd.adobe.photoshop"),
}
_MESSAGE_ID_RE = re.compile(r"^<[^<>@\s]+@[^<>@\s]+>$")


class MailError(Exception):
    """A mail that was not sent; ``permanent`` means retrying the same mail will not help."""

    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


def result_message_id(key: str) -> str:
    """The Message-ID for an idempotency key, e.g. ``job-42-final`` → ``<job-42-final@retouch-shop>``."""
    if not key:
        raise ValueError("empty message-id key")
    return f"<{_safe_token(key)}@{MESSAGE_ID_DOMAIN}>"


def _safe_token(text: str, keep: str = "") -> str:
    """``text`` limited to [A-Za-z0-9._-] and ``keep``; when anything changed, a hash keeps distinct texts distinct."""
    safe = re.sub(rf"[^A-Za-z0-9._{re.escape(keep)}-]", "_", text)[:150]
    if safe != text or not safe:
        safe = f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    return safe


def attachment_type(path: Path) -> tuple[str, str]:
    """(maintype, subtype) for a result file: png/jpg/svg/psd by suffix, else a guess, else octet-stream."""
    known = _RESULT_TYPES.get(path.suffix.lower())
    if known:
        return known
    guessed, _ = mimetypes.guess_type(path.name)
    if guessed and "/" in guessed:
        main, sub = guessed.split("/", 1)
        return main, sub
    return "application", "octet-stream"


def build_result_mail(
    to: str, sender: str, subject: str, body: str, attachment: Path, message_id: str
) -> EmailMessage:
    """The result mail: UTF-8 subject and body, the result file attached, Message-ID set to ``message_id``."""
    return build_files_mail(to, sender, subject, body, [(attachment, attachment.name)], message_id)


def build_files_mail(
    to: str, sender: str, subject: str, body: str, files: list[tuple[Path, str]], message_id: str
) -> EmailMessage:
    """A mail carrying several results: each (path, name shown to the customer) attached in order."""
    if not _MESSAGE_ID_RE.match(message_id):
        raise ValueError(f"message_id must look like <key@{MESSAGE_ID_DOMAIN}>, got {message_id!r}")
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = message_id
    msg.set_content(body, charset="utf-8")
    for path, name in files:
        maintype, subtype = attachment_type(path)
        msg.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=name)
    return msg


# Above what a mail may weigh when the server names no limit (EHLO SIZE): providers take 20-50 MB.
DEFAULT_SIZE_LIMIT = 20 * 1024 * 1024
_MAIL_OVERHEAD = 16 * 1024  # headers, body and MIME boundaries


def encoded_size(raw_bytes: int) -> int:
    """What an attachment of raw_bytes weighs in a mail: base64 with its line breaks."""
    return (raw_bytes + 2) // 3 * 4 * 78 // 76


def split_by_size(sizes: list[int], limit: int) -> list[list[int]]:
    """Indexes of the attachments, in order, packed into as few mails as fit under limit bytes each (one too
    big for any mail goes alone: the server says so)."""
    parts: list[list[int]] = []
    weight = 0
    for i, size in enumerate(sizes):
        cost = encoded_size(size)
        if parts and weight + cost <= limit:
            parts[-1].append(i)
            weight += cost
        else:
            parts.append([i])
            weight = _MAIL_OVERHEAD + cost
    return parts


def plain_login_allowed(host: str) -> bool:
    """Logging in without TLS is only acceptable to a server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _scrub(text: str, secret: str | None) -> str:
    """Server replies are echoed into errors; make sure the password never rides along."""
    return text.replace(secret, "***") if secret else text


def _reply_text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


class SmtpMailer:
    """Sends mail over SMTP: implicit TLS on port 465, else STARTTLS when offered; login when a user is set."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str | None,
        password: str | None,
        sender: str,
        timeout_s: float = 20,
        *,
        ssl_context: ssl.SSLContext | None = None,
        implicit_tls: bool | None = None,
    ) -> None:
        self.host, self.port, self.user, self.sender, self.timeout_s = host, port, user, sender, timeout_s
        self._password = password
        self._ssl_context = ssl_context
        self.implicit_tls = port == 465 if implicit_tls is None else implicit_tls
        self.server_limit: int | None = None  # the server's EHLO SIZE, learnt on the first connection

    def size_limit(self) -> int:
        """The most a mail may weigh: the server's own limit (asked once) when it names one, else the default."""
        if self.server_limit is None:
            try:
                with self._connect() as smtp:
                    smtp.ehlo()
                    self.server_limit = int(smtp.esmtp_features.get("size", "0") or 0)
            except (OSError, smtplib.SMTPException, ValueError) as exc:
                log.info("cannot ask %s:%s for its size limit (%s); using the default", self.host, self.port,
                         type(exc).__name__)
                return DEFAULT_SIZE_LIMIT
        return min(self.server_limit, DEFAULT_SIZE_LIMIT) if self.server_limit else DEFAULT_SIZE_LIMIT

    def __repr__(self) -> str:
        return f"SmtpMailer(host={self.host!r}, port={self.port}, user={self.user!r}, sender={self.sender!r})"

    def send(self, msg: EmailMessage) -> None:
        """Send one message; raises MailError (permanent or temporary) when the server does not take it."""
        try:
            self._send(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(f"{rcpt}: {code} {_reply_text(reply)}" for rcpt, (code, reply) in exc.recipients.items())
            raise self._error(f"recipient refused: {detail}", all(code >= 500 for code in codes)) from None
        except smtplib.SMTPResponseException as exc:
            # Sender refused, data refused, authentication failed …: the reply code says whether to retry.
            what = type(exc).__name__.removeprefix("SMTP")
            text = f"{what}: {exc.smtp_code} {_reply_text(exc.smtp_error)}"
            raise self._error(text, exc.smtp_code >= 500) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise self._error(f"server does not support what is configured: {exc}", True) from None
        except smtplib.SMTPServerDisconnected as exc:
            raise self._error(f"connection to {self.host}:{self.port} lost: {exc}", False) from None
        except TimeoutError:
            raise self._error(f"timed out after {self.timeout_s:g} s at {self.host}:{self.port}", False) from None
        except OSError as exc:
            # Connection refused, unreachable, TLS failures: the server may well be back later.
            raise self._error(f"cannot reach {self.host}:{self.port}: {type(exc).__name__}: {exc}", False) from None
        except smtplib.SMTPException as exc:
            raise self._error(f"SMTP error: {type(exc).__name__}: {exc}", False) from None
        log.info("mail %s sent to %s via %s:%s", msg["Message-ID"], msg["To"], self.host, self.port)

    def _error(self, message: str, permanent: bool) -> MailError:
        message = _scrub(message, self._password)
        log.warning("mail not sent (%s): %s", "permanent" if permanent else "temporary", message)
        return MailError(message, permanent)

    def _connect(self) -> smtplib.SMTP:
        if self.implicit_tls:
            context = self._ssl_context or ssl.create_default_context()
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=context)
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)

    def _send(self, msg: EmailMessage) -> None:
        context = self._ssl_context or ssl.create_default_context()
        with self._connect() as smtp:
            smtp.ehlo()
            # A local test server (aiosmtpd) offers no STARTTLS; a real relay does, and then it is used.
            encrypted = self.implicit_tls
            if not encrypted and smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
                encrypted = True
            if self.user:
                if not (self.user + (self._password or "")).isascii():
                    # smtplib sends AUTH as ASCII only and would fail with an error quoting nothing useful.
                    raise smtplib.SMTPNotSupportedError("SMTP user and password must be ASCII")
                if not encrypted and not plain_login_allowed(self.host):
                    raise smtplib.SMTPNotSupportedError("no TLS on this connection; the password is not sent in clear")
                smtp.login(self.user, self._password or "")
            refused = smtp.send_message(msg, from_addr=self.sender)
        if refused:
            # Only reached when some recipients were taken and others not; result mails have one recipient.
            raise smtplib.SMTPRecipientsRefused(refused)


class FileMailer:
    """Writes each mail to ``{dir}/{safe message-id}.eml`` (atomically, once per Message-ID) instead of sending."""

    def __init__(self, dir: Path, sender: str = DEFAULT_SENDER) -> None:
        self.dir, self.sender = Path(dir), sender

    def __repr__(self) -> str:
        return f"FileMailer(dir={str(self.dir)!r}, sender={self.sender!r})"

    def path_for(self, message_id: str) -> Path:
        """Where the mail with this Message-ID is (or would be) written."""
        return self.dir / f"{_safe_token(message_id.strip().strip('<>'), keep='@')}.eml"

    def size_limit(self) -> int:
        """The outbox folder takes any size; mails are split as a relay would want them."""
        return DEFAULT_SIZE_LIMIT

    def send(self, msg: EmailMessage) -> Path:
        """Write the mail once; a second send with the same Message-ID keeps the first file. Returns its path."""
        message_id = msg["Message-ID"]
        if not message_id:
            raise ValueError("a mail for the outbox needs a Message-ID")
        target = self.path_for(str(message_id))
        if target.exists():
            log.info("mail %s already in outbox at %s", message_id, target)
            return target
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".eml")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(msg.as_bytes())
                    fh.flush()
                    os.fsync(fh.fileno())
                # link() fails if a concurrent writer got there first: first one wins, never a torn file.
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except OSError as exc:
            raise MailError(f"cannot write mail to outbox {self.dir}: {exc}", False) from None
        log.info("mail %s to %s written to %s", message_id, msg["To"], target)
        return target


def mailer_from_settings(settings: Settings) -> SmtpMailer | FileMailer:
    """SMTP when SMTP_HOST is set, else the file outbox under DATA_DIR/outbox-mail."""
    sender = settings.SMTP_FROM or settings.SMTP_USER or DEFAULT_SENDER
    if not settings.SMTP_HOST:
        return FileMailer(settings.DATA_DIR / OUTBOX_DIRNAME, sender=sender)
    password = settings.SMTP_PASSWORD.get_secret_value() if settings.SMTP_PASSWORD else None
    return SmtpMailer(settings.SMTP_HOST, settings.SMTP_PORT, settings.SMTP_USER, password, sender)
