"""Staff notifications through a WeChat Work group robot webhook (SPEC §4).

The robot takes ``{"msgtype": "markdown", "markdown": {"content": ...}}`` and answers ``errcode`` 0 on
success. It allows 20 messages a minute and 4,096 bytes of markdown per message, so bursts are merged
(:func:`merge_notifications`) and paced (:class:`RateWindow`). The webhook URL carries the robot's key:
it is redacted everywhere it could be shown.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from integrations.http_limits import AnswerTooLarge, read_text_capped

log = logging.getLogger("shop.wechat")

MAX_CONTENT_BYTES = 4096
MESSAGES_PER_MINUTE = 20
RATE_LIMITED_ERRCODE = 45009
RATE_LIMITED_RETRY_S = 60.0
TRUNCATION_MARKER = "\n…(内容过长,已截断)"
SEPARATOR = "\n\n"


class WebhookError(Exception):
    """A notification the robot did not take; ``retry_after_s`` is set when the robot asked us to wait."""

    def __init__(self, message: str, retry_after_s: float | None, errcode: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.errcode = errcode


def redact_url(url: str) -> str:
    """The URL with every query value (the robot key among them) replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = urlencode([(name, "***") for name, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit(parts._replace(query=query))


def _scrub(text: str, url: str) -> str:
    """Library errors may quote the URL or parts of it; take every secret-bearing piece out."""
    secrets = [value for _, value in parse_qsl(urlsplit(url).query) if value]
    text = text.replace(url, redact_url(url))
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def truncate_utf8(text: str, limit_bytes: int, marker: str = TRUNCATION_MARKER) -> str:
    """``text`` if it fits in ``limit_bytes`` of UTF-8, else its longest prefix that fits with ``marker``."""
    if len(text.encode()) <= limit_bytes:
        return text
    room = limit_bytes - len(marker.encode())
    if room < 0:
        raise ValueError(f"limit of {limit_bytes} bytes is smaller than the truncation marker")
    # Cutting the bytes may split a character; dropping the partial one keeps valid UTF-8.
    return text.encode()[:room].decode("utf-8", "ignore") + marker


def merge_notifications(items: list[str], limit_bytes: int = MAX_CONTENT_BYTES) -> list[str]:
    """Merge a burst of markdown notes, in order, into as few messages of at most ``limit_bytes`` as possible.

    Messages split only between items; an item too long on its own is truncated with a marker. Blank
    items carry nothing to show (and the robot refuses empty content), so they are left out.
    """
    sep_bytes = len(SEPARATOR.encode())
    messages: list[str] = []
    current: list[str] = []
    size = 0
    for item in items:
        if not item.strip():
            continue
        item = truncate_utf8(item, limit_bytes)
        item_bytes = len(item.encode())
        if current and size + sep_bytes + item_bytes <= limit_bytes:
            current.append(item)
            size += sep_bytes + item_bytes
            continue
        if current:
            messages.append(SEPARATOR.join(current))
        current, size = [item], item_bytes
    if current:
        messages.append(SEPARATOR.join(current))
    return messages


async def post_markdown(session: aiohttp.ClientSession, url: str, content: str, timeout_s: float = 10) -> None:
    """Post one markdown message to the robot; raises WebhookError unless it answers ``errcode`` 0.

    Content over the robot's 4,096-byte limit is truncated with a marker rather than refused.
    """
    shown = redact_url(url)
    if len(content.encode()) > MAX_CONTENT_BYTES:
        log.warning("notification of %d bytes truncated to %d", len(content.encode()), MAX_CONTENT_BYTES)
        content = truncate_utf8(content, MAX_CONTENT_BYTES)
    payload = {"msgtype": "markdown", "markdown": {"content": content}}
    try:
        async with session.post(url, json=payload, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            status, text = resp.status, await read_text_capped(resp)
            retry_after = resp.headers.get("Retry-After")
    except AnswerTooLarge as exc:
        raise _error(f"robot {shown}: {exc}", None) from None
    except TimeoutError:
        raise _error(f"robot {shown} did not answer within {timeout_s:g} s", None) from None
    except aiohttp.ClientError as exc:
        raise _error(_scrub(f"robot {shown} unreachable: {type(exc).__name__}: {exc}", url), None) from None
    if status != 200:
        wait = _seconds(retry_after) if status == 429 else None
        raise _error(f"robot {shown} answered HTTP {status}: {_scrub(text[:200], url)}", wait)
    try:
        answer = json.loads(text)
        errcode = int(answer["errcode"])
    except (ValueError, TypeError, KeyError):
        raise _error(f"robot {shown} answered non-JSON or no errcode: {_scrub(text[:200], url)}", None) from None
    if errcode != 0:
        errmsg = _scrub(str(answer.get("errmsg", "")), url)
        wait = RATE_LIMITED_RETRY_S if errcode == RATE_LIMITED_ERRCODE else None
        raise _error(f"robot {shown} refused the message: errcode {errcode} {errmsg}", wait, errcode)
    log.debug("notification posted to %s", shown)


def _seconds(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header is not None else None
    except ValueError:
        return None


def _error(message: str, retry_after_s: float | None, errcode: int | None = None) -> WebhookError:
    log.warning("staff notification failed: %s", message)
    return WebhookError(message, retry_after_s, errcode)


class RateWindow:
    """Sliding one-minute window of sends for one robot; pure: the caller passes the clock."""

    def __init__(self, per_minute: int = MESSAGES_PER_MINUTE, window_s: float = 60.0) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute, self.window_s = per_minute, window_s
        self._sent: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.window_s:
            self._sent.popleft()

    def allow(self, now: float) -> bool:
        """True (and the send is counted) when one more message fits in the window at ``now``."""
        self._expire(now)
        if len(self._sent) >= self.per_minute:
            return False
        self._sent.append(now)
        return True

    def wait_s(self, now: float) -> float:
        """Seconds from ``now`` until :meth:`allow` would say yes; 0 when it would now."""
        self._expire(now)
        if len(self._sent) < self.per_minute:
            return 0.0
        return max(0.0, self._sent[0] + self.window_s - now)
