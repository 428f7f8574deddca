"""The conversations router's roster, with no I/O: live conversation actors in LRU order, passivated ones until their
exit is seen, what waits for them, and the figures health shows. Pure: the caller passes the clocks."""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from typing import Any, Generic, TypeVar

A = TypeVar("A")  # an actor address
SHOWN = 200  # live actors listed in health, the most recently used


class Roster(Generic[A]):
    """The router's conversation actors by customer: where each runs, since when, and when it was last used."""

    def __init__(self) -> None:
        self.live: OrderedDict[str, A] = OrderedDict()  # LRU order: oldest first
        # Passivated actors until their exit is seen. Addresses are compared with ==, never by str():
        # the address createActor returns is a local placeholder that only == resolves to the real one.
        self.leaving: list[tuple[A, str, float]] = []
        # One writer per customer: what arrives while the customer's old actor is still exiting waits here.
        self.held: dict[str, list[Any]] = {}
        self.pids: dict[str, int] = {}
        self.placed: dict[str, str] = {}  # customer → the system their (live or leaving) actor runs on
        self.last_active: dict[str, float] = {}
        self.since: dict[str, float] = {}  # customer → when (epoch s) their live actor was created
        self.counts = {"activated": 0, "passivated": 0, "died": 0}
        self.activating: dict[str, float] = {}
        self.activation_s: deque[float] = deque(maxlen=1000)  # recent createActor → first answer times

    def system(self, customer_id: str) -> str:
        """The system the customer's (live or leaving) actor runs on; "" when it has none."""
        return self.placed.get(customer_id, "")

    def load(self) -> Counter[str]:
        """How many actors (live or leaving) each system runs."""
        return Counter(self.placed.values())

    def leaves(self, customer_id: str) -> bool:
        """Whether an old actor of the customer is still exiting."""
        return any(c == customer_id for _, c, _ in self.leaving)

    def hold(self, customer_id: str, msg: Any) -> bool:
        """Keep msg until the customer's old actor has exited, when they have no live one; whether it was kept."""
        if customer_id not in self.live and self.leaves(customer_id):
            self.held.setdefault(customer_id, []).append(msg)
            return True
        return False

    def activated(self, customer_id: str, address: A, system: str, wall: float, mono: float) -> None:
        """A new actor of the customer was created at address on system."""
        self.placed[customer_id] = system
        self.live[customer_id] = address
        self.since[customer_id] = wall
        self.counts["activated"] += 1
        self.activating[customer_id] = mono

    def used(self, customer_id: str, mono: float) -> None:
        """The customer's live actor was given work: the most recently used now."""
        self.live.move_to_end(customer_id)
        self.last_active[customer_id] = mono

    def started(self, customer_id: str, pid: int, mono: float) -> None:
        """The customer's actor answered for the first time, from process pid."""
        self.pids[customer_id] = pid
        began = self.activating.pop(customer_id, None)
        if began is not None:
            self.activation_s.append(mono - began)

    def passivate(self, customer_id: str, mono: float) -> A | None:
        """The customer's live actor leaves (its address, to tell it to exit), or None when they had none."""
        address = self.live.pop(customer_id, None)
        self.last_active.pop(customer_id, None)
        self.since.pop(customer_id, None)
        self.pids.pop(customer_id, None)
        self.activating.pop(customer_id, None)
        if address is not None:
            self.counts["passivated"] += 1
            self.leaving.append((address, customer_id, mono))
        return address

    def forget(self, customer_id: str) -> None:
        """The customer's live actor died (or went with its host): its next message starts a new one."""
        self.counts["died"] += 1
        del self.live[customer_id]
        self.pids.pop(customer_id, None)
        self.last_active.pop(customer_id, None)
        self.since.pop(customer_id, None)
        self.activating.pop(customer_id, None)

    def live_customer(self, address: A) -> str | None:
        """The customer whose live actor is at address, if any."""
        return next((c for c, a in self.live.items() if a == address), None)

    def exited(self, address: A) -> str | None:
        """A passivated actor exited: its customer, or None (a repeat notice)."""
        leaving = next((entry for entry in self.leaving if entry[0] == address), None)
        if leaving is None:
            return None
        self.leaving.remove(leaving)
        return leaving[1]

    def owns(self, address: A) -> bool:
        """Whether address is one of the router's actors, live or leaving."""
        return any(a == address for a in self.live.values()) or any(e[0] == address for e in self.leaving)

    def on_systems(self, systems: set[str]) -> list[str]:
        """The customers whose (live or leaving) actor runs on one of systems."""
        return [c for c, system in self.placed.items() if system in systems]

    def not_leaving(self, customer_id: str) -> None:
        """The customer's old actors are gone without an exit notice: none is waited for."""
        self.leaving = [e for e in self.leaving if e[1] != customer_id]

    def release(self, customer_id: str) -> list[Any]:
        """The customer's old actors are all gone: they run nowhere now; what was held for them."""
        self.placed.pop(customer_id, None)
        return self.held.pop(customer_id, [])

    def idle(self, before: float) -> list[str]:
        """The customers whose live actor was last used before then."""
        return [c for c, at in self.last_active.items() if at < before]

    def overdue(self, mono: float, wait_s: float) -> list[tuple[A, str, float]]:
        """The leaving actors that have not exited within wait_s."""
        return [e for e in self.leaving if mono - e[2] > wait_s]

    def stuck(self, customers: set[str], before: float) -> list[str]:
        """Of customers with messages unhandled since before, those whose live actor was created before then too."""
        # An actor is judged on what it left undone in its own time: one just created (after a restart, or a
        # replacement) gets the whole window too, or a slow start under load is replaced over and over.
        return [c for c in customers if c in self.live and self.since.get(c, 0.0) <= before]

    def detail(self, here: str, rate_limited: int) -> dict[str, Any]:
        """The router's figures for health: counts, activation times, where the live actors run, the latest of them."""
        actors = [
            {"name": f"conversation:{c}", "kind": "conversation", "pid": self.pids.get(c), "state": "running",
             "system": self.placed.get(c, here)}
            for c in list(self.live)[-SHOWN:]
        ]
        ordered = sorted(self.activation_s)
        timing = {}
        if ordered:
            timing = {"activation_p50_ms": round(ordered[len(ordered) // 2] * 1000, 1),
                      "activation_p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1)}
        return {"live": len(self.live), **self.counts, **timing, "rate_limited": rate_limited,
                "by_system": dict(Counter(self.placed[c] for c in self.live if c in self.placed)), "actors": actors}
