"""Fixtures the e2e tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import FileServer, SmtpSink


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on a free loopback port, one per test module, keeping what it receives."""
    sink = SmtpSink().start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    """A loopback server of the customers' photos (FETCH_ALLOW_HOSTS must name it), one per test module."""
    with FileServer() as server:
        yield server
