"""Secrets out of logs and answers: `redact(text)` masks every configured secret; `RedactingFilter` does it to
every log record (message, arguments, exception text).

The secrets are the values of every SecretStr setting (API keys, SMTP password, callback secret, the WeChat
webhook and its `key`, a console secret), the password in DATABASE_URL, and their URL- and JSON-escaped
forms. A value shorter than MIN_SECRET_LEN is not masked (it would mangle ordinary words such as a key
"test"); `weak_secrets` names such settings so the launcher can warn about them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

from pydantic import SecretStr

MASK = "***"
MIN_SECRET_LEN = 8


def _secret_settings(settings: Any) -> Iterable[tuple[str, str]]:
    """(setting name, secret value) for every secret a Settings object holds."""
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr) and value.get_secret_value():
            raw = value.get_secret_value()
            yield name, raw
            if "://" in raw:  # a URL that is a secret as a whole (the webhook): its query values are too
                for _, part in parse_qsl(urlsplit(raw).query):
                    yield name, part
    url = getattr(settings, "DATABASE_URL", "") or ""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        yield "DATABASE_URL", password
        yield "DATABASE_URL", unquote(password)


def secret_values(settings: Any) -> list[str]:
    """Every string to mask for these settings, with its escaped forms; longest first."""
    found: set[str] = set()
    for _, value in _secret_settings(settings):
        if len(value) < MIN_SECRET_LEN:
            continue
        found.update({value, quote(value, safe=""), quote_plus(value), json.dumps(value, ensure_ascii=True)[1:-1],
                      json.dumps(value, ensure_ascii=False)[1:-1]})
    return sorted(found, key=lambda s: (-len(s), s))


def weak_secrets(settings: Any) -> list[str]:
    """Names of secret settings too short to be masked (and too short to be safe)."""
    return sorted({name for name, value in _secret_settings(settings) if len(value) < MIN_SECRET_LEN})


class Redactor:
    """Masks a fixed set of secrets in any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        ordered = sorted({s for s in secrets if s}, key=lambda s: (-len(s), s))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        """The text with every secret replaced by MASK."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)


_active = Redactor()


def configure(settings: Any) -> None:
    """Mask these settings' secrets in this process from now on (the launcher and every actor call it)."""
    global _active
    _active = Redactor(secret_values(settings))


def redact(text: str) -> str:
    """The text with every secret of this process's settings masked."""
    return _active(text)


class RedactingFilter(logging.Filter):
    """A handler filter that masks secrets in a record's message, arguments, exception and stack text.

    With `secrets` it masks those (how the launcher hands them to Thespian's logging process, which never
    sees the settings); without, this process's configured ones.
    """

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self._redact = Redactor(secrets) if secrets is not None else None

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place (once: the result has no secret left); always let it through."""
        mask = self._redact or _active
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is, masked
            message = f"{record.msg} {record.args}"
        record.msg, record.args = mask(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True


def add_filter(log_defs: dict[str, Any], settings: Any) -> dict[str, Any]:
    """Put a RedactingFilter with these settings' secrets on every handler of a logging dictConfig."""
    log_defs.setdefault("filters", {})["redact"] = {"()": "core.redaction.RedactingFilter",
                                                     "secrets": secret_values(settings)}
    for handler in log_defs.get("handlers", {}).values():
        if "redact" not in handler.setdefault("filters", []):
            handler["filters"].append("redact")
    return log_defs
