"""Raw Thespian fan-out, the baseline of bench/gateway.py: one actor telling small messages to many."""

from __future__ import annotations

import time
from typing import Any

from thespian.actors import Actor, ActorAddress, ActorExitRequest


class Receiver(Actor):
    """Counts what it receives and reports when its quota has arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.expected = -1
        self.seen = 0
        self.report_to: ActorAddress | None = None

    def receiveMessage(self, msg: Any, sender: ActorAddress) -> None:  # noqa: N802
        if isinstance(msg, tuple) and msg[0] == "expect":
            self.expected, self.report_to = msg[1], msg[2]
        elif isinstance(msg, tuple) and msg[0] == "m":
            self.seen += 1
        if self.seen == self.expected and self.report_to is not None:
            self.send(self.report_to, ("done", time.time()))
            self.expected = -1


class Sender(Actor):
    """Creates the receivers, then on "go" sends n small messages round-robin and answers when all arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.receivers: list[ActorAddress] = []
        self.asker: ActorAddress | None = None
        self.pending = 0
        self.started = 0.0

    def receiveMessage(self, msg: Any, sender: ActorAddress) -> None:  # noqa: N802
        if isinstance(msg, tuple) and msg[0] == "create":
            self.receivers = [self.createActor(Receiver) for _ in range(msg[1])]
            for r in self.receivers:
                self.send(r, ("expect", 0, None))
            self.send(sender, ("created", len(self.receivers)))
        elif isinstance(msg, tuple) and msg[0] == "go":
            n = msg[1]
            self.asker, self.pending = sender, len(self.receivers)
            per = [n // len(self.receivers) + (1 if i < n % len(self.receivers) else 0)
                   for i in range(len(self.receivers))]
            for r, quota in zip(self.receivers, per, strict=True):
                self.send(r, ("expect", quota, self.myAddress))
            self.started = time.time()
            for i in range(n):
                self.send(self.receivers[i % len(self.receivers)], ("m", i))
        elif isinstance(msg, tuple) and msg[0] == "done":
            self.pending -= 1
            if self.pending == 0 and self.asker is not None:
                self.send(self.asker, ("finished", time.time() - self.started))
        elif isinstance(msg, ActorExitRequest):
            pass
