"""Root's supervision with no I/O: its children, their address book, and the restart policy (restart at once,
back off in a crash loop, or give up)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from protocol.messages import AddressBook

A = TypeVar("A")  # an actor address

RESTART_WINDOW_S = 60.0
RESTART_INTENSITY = 10  # early deaths of one child within the window before Root gives up
EARLY_DEATH_S = 0.5  # a child that dies sooner than this after its start is crash-looping
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.1, 5.0


@dataclass(frozen=True)
class Verdict:
    """What to do about one death: restart after delay, or give up (the launcher restarts all)."""

    give_up: bool
    delay: float
    early: bool
    early_deaths: tuple[float, ...]  # early deaths within the window, this one included


def on_death(started: float, early_deaths: tuple[float, ...], now: float) -> Verdict:
    """The verdict on a child that started at started and died at now, given its earlier early deaths.

    A child killed after it had been serving is restarted at once, however often that happens;
    only deaths right after a start back off and count toward giving up.
    """
    early = now - started < EARLY_DEATH_S
    recent = tuple(t for t in early_deaths if now - t < RESTART_WINDOW_S) + ((now,) if early else ())
    if len(recent) > RESTART_INTENSITY:
        return Verdict(give_up=True, delay=0.0, early=early, early_deaths=recent)
    delay = min(BACKOFF_FIRST_S * 2 ** (len(recent) - 1), BACKOFF_MAX_S) if early else 0.0
    return Verdict(give_up=False, delay=delay, early=early, early_deaths=recent)


@dataclass
class Child(Generic[A]):
    """A supervised child: where it is and how often it died."""

    name: str
    kind: str = ""
    address: A | None = None
    state: str = "starting"
    restarts: int = 0
    deaths: tuple[float, ...] = ()  # times of early deaths, within the window
    started: float = 0.0

    def start(self, address: A, now: float) -> None:
        """It was (re)created at address at now."""
        self.address = address
        self.state = "running"
        self.started = now

    def died(self, now: float) -> Verdict:
        """It died at now: gone from its address, restarting, its early deaths counted; the verdict on it."""
        self.address = None
        self.state = "restarting"
        verdict = on_death(self.started, self.deaths, now)
        self.deaths = verdict.early_deaths
        return verdict


def book(root: Any, children: Mapping[str, Child[Any]]) -> AddressBook:
    """The address book Root sends every child: its own address and its children's where they are."""
    addrs = {n: c.address for n, c in children.items()}
    # ingress-2, … are in no book: nobody addresses them but through reply_to or as a sender.
    return AddressBook(root=root, **{n: a for n, a in addrs.items() if n in AddressBook.model_fields})
