"""Caps on what outside HTTP servers send back: an answer is read up to a limit, never whole on trust.

`read_capped` serves the aiohttp clients (dispatch API, WeChat robot, Tianwang callbacks); `capped_answers`
is an httpx (httpx2) response hook for the Gemini SDK, which reads its answers itself.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp

MAX_ANSWER_BYTES = 1024 * 1024  # a JSON answer of a dispatch, robot or callback endpoint
_CHUNK = 64 * 1024


class AnswerTooLarge(Exception):
    """An HTTP answer over the reader's limit; the rest of it was not read."""


async def read_capped(resp: aiohttp.ClientResponse, limit: int = MAX_ANSWER_BYTES) -> bytes:
    """The answer's body, or AnswerTooLarge as soon as it (or its Content-Length) passes limit bytes."""
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise AnswerTooLarge(f"the answer of {declared} bytes is over the {limit}-byte limit")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > limit:
            raise AnswerTooLarge(f"the answer is over the {limit}-byte limit")
    return bytes(body)


async def read_text_capped(resp: aiohttp.ClientResponse, limit: int = MAX_ANSWER_BYTES) -> str:
    """read_capped, decoded as the answer's charset says (UTF-8 by default), bad bytes replaced."""
    return (await read_capped(resp, limit)).decode(resp.charset or "utf-8", errors="replace")


@functools.cache
def _capped_stream_class(base: type) -> type:
    """A byte stream of the response's own HTTP library (httpx or httpx2) that counts what it yields."""

    class CappedStream(base):  # type: ignore[valid-type,misc]
        def __init__(self, inner: Any, limit: int, error: Callable[[str], Exception]) -> None:
            self.inner, self.limit, self.error = inner, limit, error

        def __iter__(self) -> Iterator[bytes]:
            seen = 0
            for chunk in self.inner:
                seen += len(chunk)
                if seen > self.limit:
                    raise self.error(f"the answer is over the {self.limit}-byte limit")
                yield chunk

        def close(self) -> None:
            self.inner.close()

    return CappedStream


def capped_answers(limit: int, error: Callable[[str], Exception]) -> Callable[[Any], None]:
    """An httpx (or httpx2) response hook: the body is read through a counter that raises error(message)
    once it passes limit bytes, and an answer declaring more is refused before any of it is read."""

    def hook(response: Any) -> None:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            response.close()
            raise error(f"the answer of {declared} bytes is over the {limit}-byte limit")
        lib = importlib.import_module(type(response).__module__.split(".")[0])
        response.stream = _capped_stream_class(lib.SyncByteStream)(response.stream, limit, error)

    return hook
