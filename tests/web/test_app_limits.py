"""The ingress's body limit holds for a body sent without a Content-Length too, and answers carry no secret."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from core import redaction
from persistence.db import close_database, open_database
from protocol.settings import Settings
from web.app import make_app
from web.base import MAX_BODY, ApiState, envelope

pytestmark = pytest.mark.timeout(60)


def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **extra: str) -> Settings:
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    return Settings(_env_file=None, DATA_DIR=tmp_path, **extra)


async def chunks(total: int) -> AsyncIterator[bytes]:
    yield b'{"task_id": "'
    for _ in range(total // 65536):
        yield b"x" * 65536
    yield b'"}'


def test_a_chunked_body_over_the_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(tmp_path, monkeypatch)
    open_database(s.DATABASE_URL, create=True)

    async def scenario() -> tuple[int, dict, bool]:
        async with TestClient(TestServer(make_app(ApiState(s, lambda item: None)))) as client:
            resp = await client.post("/api/task/receive", data=chunks(2 * MAX_BODY))
            return resp.status, await resp.json(), "Content-Length" in resp.request_info.headers

    try:
        status, answer, declared = asyncio.run(scenario())
    finally:
        close_database()
    assert not declared
    assert status == 413 and answer == {"code": 413, "message": f"request body is over the {MAX_BODY}-byte limit",
                                        "data": None}


def test_the_envelope_masks_a_secret_quoted_in_any_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(tmp_path, monkeypatch, TUHUI_DISPATCH_KEY="dispatch-key-0123456789")
    redaction.configure(s)
    try:
        resp = envelope(502, "dispatch answered: wrong key dispatch-key-0123456789",
                        {"error": "dispatch-key-0123456789"})
    finally:
        redaction.configure(settings(tmp_path, monkeypatch))
    assert json.loads(resp.text) == {"code": 502, "message": "dispatch answered: wrong key ***",
                                     "data": {"error": "***"}}
