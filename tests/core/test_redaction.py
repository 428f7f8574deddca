"""redact() and the logging filter: every secret setting masked, in messages, arguments and tracebacks."""

from __future__ import annotations

import io
import logging
import logging.config
from collections.abc import Iterator

import pytest

from core import redaction
from protocol.settings import Settings

SECRETS = {
    "TIANWANG_API_KEY": "tw-key-0123456789",
    "TIANWANG_CALLBACK_SECRET": "cb-secret-0123456789",
    "GEMINI_API_KEY": "AIzaSyA-gemini-0123456789",
    "TUHUI_DISPATCH_KEY": "tuhui-0123456789",
    "SMTP_PASSWORD": "p@ss word/0123",
    "WECHAT_WEBHOOK": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa",
}
DB_PASSWORD = "pg-p@ss:0123456"


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[Settings]:
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    values = dict(SECRETS)
    if "CONSOLE_SECRET" in Settings.model_fields:
        values["CONSOLE_SECRET"] = "console-secret-0123456789"
    s = Settings(_env_file=None, DATA_DIR=tmp_path,
                 DATABASE_URL="postgresql://shop:pg-p%40ss%3A0123456@db.example.com:5432/shop", **values)
    redaction.configure(s)
    yield s
    redaction.configure(Settings(_env_file=None, DATA_DIR=tmp_path))


def everything(s: Settings) -> list[str]:
    out = [v.get_secret_value() for name in Settings.model_fields if (v := getattr(s, name)) is not None
           and hasattr(v, "get_secret_value")]
    return [*out, DB_PASSWORD, "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"]


def test_every_secret_setting_is_masked_in_any_text(settings: Settings) -> None:
    for secret in everything(settings):
        text = f"the upstream said: {secret} is wrong ({secret})"
        assert redaction.redact(text) == "the upstream said: *** is wrong (***)", secret


def test_escaped_forms_are_masked_too(settings: Settings) -> None:
    assert redaction.redact("login p%40ss%20word%2F0123 failed") == "login *** failed"  # URL-quoted
    assert redaction.redact("login p%40ss+word%2F0123 failed") == "login *** failed"  # form-quoted
    assert redaction.redact("postgresql://shop:pg-p%40ss%3A0123456@db") == "postgresql://shop:***@db"


def test_the_webhook_key_alone_is_masked(settings: Settings) -> None:
    assert redaction.redact("errcode 93000: invalid key 693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa") == \
        "errcode 93000: invalid key ***"


def test_short_secrets_are_named_not_masked(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    s = Settings(_env_file=None, DATA_DIR=tmp_path, GEMINI_API_KEY="test", TUHUI_DISPATCH_KEY="long-enough-key")
    assert redaction.weak_secrets(s) == ["GEMINI_API_KEY"]
    assert redaction.secret_values(s)[0] == "long-enough-key"
    assert "test" not in redaction.secret_values(s)  # "test" in ordinary text stays readable


def test_text_without_secrets_is_left_alone(settings: Settings) -> None:
    assert redaction.redact("job J1 rendered in 2.1 s") == "job J1 rendered in 2.1 s"
    assert redaction.Redactor()("anything") == "anything"


def run_logged(log_defs: dict, emit: object) -> str:
    """Configure logging from log_defs with a StringIO handler, run emit(logger), return what was written."""
    stream = io.StringIO()
    log_defs["handlers"]["mem"]["stream"] = stream
    logging.config.dictConfig(log_defs)
    try:
        emit(logging.getLogger("shop.test"))  # type: ignore[operator]
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    return stream.getvalue()


def test_the_launchers_filter_masks_messages_arguments_and_tracebacks(settings: Settings) -> None:
    key = SECRETS["GEMINI_API_KEY"]
    log_defs = redaction.add_filter({
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(message)s"}},
        "handlers": {"mem": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "root": {"handlers": ["mem"], "level": "INFO"},
    }, settings)
    assert log_defs["handlers"]["mem"]["filters"] == ["redact"]

    def emit(log: logging.Logger) -> None:
        log.warning("gemini said %s for key %r", f"API key {key} invalid", key)
        log.info(f"inline {SECRETS['SMTP_PASSWORD']}")
        try:
            raise RuntimeError(f"POST https://example.com/send?key={key} failed")
        except RuntimeError:
            log.exception("render failed")

    out = run_logged(log_defs, emit)
    assert key not in out and SECRETS["SMTP_PASSWORD"] not in out
    assert "gemini said API key *** invalid for key '***'" in out
    assert "inline ***" in out
    assert "RuntimeError: POST https://example.com/send?key=*** failed" in out and "Traceback" in out


def test_the_filter_works_from_the_secrets_it_is_given(settings: Settings) -> None:
    """Thespian's logging process never sees the settings: the launcher hands it the values in log_defs."""
    redaction.configure(Settings(_env_file=None, DATA_DIR=settings.DATA_DIR))  # this process knows none
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "token %s", (SECRETS["TUHUI_DISPATCH_KEY"],), None)
    assert redaction.RedactingFilter(redaction.secret_values(settings)).filter(record)
    assert record.getMessage() == "token ***"
    again = logging.LogRecord("x", logging.ERROR, __file__, 1, "token %s", (SECRETS["TUHUI_DISPATCH_KEY"],), None)
    redaction.RedactingFilter().filter(again)
    assert again.getMessage() == f"token {SECRETS['TUHUI_DISPATCH_KEY']}"
