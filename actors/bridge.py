"""The asyncio bridge shared by the actors that own a thread (ingress, gateway, scheduler).

The thread runs an asyncio loop and never touches actor state: it hands items to the actor
through a queue plus a socketpair that the actor watches with ThespianWatch; the actor hands
work to the loop with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from thespian.actors import ThespianWatch


class ThreadBridge:
    """An asyncio loop in a daemon thread, and a mailbox from it back to the actor thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self._thread = threading.Thread(target=self._run, name=f"{name}-loop", daemon=True)
        self._started = threading.Event()
        self._signalled = False  # a wake-up byte is already on its way: under load, one wakes many items

    def start(self, main: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Start the thread and run main() in its loop until stop()."""
        self._main = main
        self._thread.start()
        self._started.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._started.set()
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self._main())

    def watch(self) -> ThespianWatch:
        """What the actor returns from every receiveMessage."""
        return ThespianWatch([self._rsock.fileno()])

    def post(self, item: Any) -> None:
        """From the loop thread: hand an item to the actor thread."""
        self._inbox.put(item)
        if not self._signalled:
            self._signalled = True
            with contextlib.suppress(BlockingIOError, OSError):
                self._wsock.send(b"\0")

    def drain(self) -> list[Any]:
        """From the actor thread: every item posted so far."""
        # Order matters: consume the wake-up bytes, then clear the flag, then read the queue. A post
        # that saw the flag still set put its item before we read the queue; one that saw it
        # cleared sent a byte we have not consumed, so the actor wakes again.
        with contextlib.suppress(BlockingIOError, OSError):
            while self._rsock.recv(4096):
                pass
        self._signalled = False
        items = []
        while True:
            try:
                items.append(self._inbox.get_nowait())
            except queue.Empty:
                return items

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """From the actor thread: run fn(*args) in the loop."""
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self, timeout: float = 3.0) -> None:
        """Cancel every task in the loop and wait for the thread to end."""
        def _cancel_all() -> None:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()

        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(_cancel_all)
            self._thread.join(timeout)
