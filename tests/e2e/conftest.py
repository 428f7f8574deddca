"""Fixtures the e2e tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import SmtpSink


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on a free loopback port, one per test module, keeping what it receives."""
    sink = SmtpSink().start()
    try:
        yield sink
    finally:
        sink.stop()
