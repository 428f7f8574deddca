"""Where placed actors run in a convention: capabilities, this system's identity, and the choice of member.

The leader keeps ingress, gateway, scheduler and dispatch itself; conversation actors and render workers
go to members by capability. The creating actor names the chosen member in `targetActorRequirements`, and
the placed class's `actorSystemCapabilityCheck` (`hosts`) accepts only that system, or, with no
requirement, only the leader: Thespian then creates the actor there or forwards the request to the named
member. Each process knows which system it belongs to from this module's state, set by the launcher
before the actor system forks (every actor process inherits it).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from protocol.convention import Members, MemberView
from protocol.settings import Settings

CAP_ROLE = "Shop Role"  # leader | member
CAP_SYSTEM = "Shop System"  # the system's id: its admin address, host:port
CAP_OFFERS = "Shop Offers"  # what a member hosts, comma-separated: conversations,renderer
CAP_RENDER_WORKERS = "Shop Render Workers"  # how many render workers a member runs
CAP_INCARNATION = "Shop Incarnation"  # a member system's start: a new one is a new member, whatever its address
CONVENTION_ADDRESS = "Convention Address.IPv4"  # Thespian's: the leader's admin address, for a member
OFFERS = ("conversations", "renderer")
SUSPECT_S = 5.0  # a member where a creation failed takes no new work for this long
MEMBER_SEND_S = 3.0  # a send to a running actor on a member gives up after this (Thespian's default: 5 minutes)

_here: dict[str, str] = {"system": "", "role": "leader", "database_url": "", "data_dir": ""}


def set_here(system: str, role: str, database_url: str = "", data_dir: str = "") -> None:
    """Name this process's system (the launcher, before the actor system forks); a member's DATABASE_URL and
    DATA_DIR."""
    _here.update(system=system, role=role, database_url=database_url, data_dir=data_dir)


def this_system() -> str:
    """The id of the actor system this process belongs to ("" outside a launcher)."""
    return _here["system"]


def member_data_dir() -> str:
    """The DATA_DIR a member was started with ("" on the leader): it must be the leader's."""
    return _here["data_dir"]


def is_member() -> bool:
    """Whether this process runs on a member system (its actors were placed here by the leader)."""
    return _here["role"] == "member"


def local_settings(settings: Settings) -> Settings:
    """The leader's settings as actors on this system use them: a member reaches the database by its own URL."""
    if is_member() and _here["database_url"] and _here["database_url"] != settings.DATABASE_URL:
        return settings.model_copy(update={"DATABASE_URL": _here["database_url"]})
    return settings


def system_id(address: str, admin_port: int) -> str:
    """A system's id: the address and admin port other systems reach it at."""
    return f"{address}:{admin_port}"


def leader_capabilities(system: str) -> dict[str, Any]:
    """The leader's capabilities: it hosts every actor that is not placed elsewhere."""
    return {CAP_ROLE: "leader", CAP_SYSTEM: system}


def member_capabilities(system: str, leader: tuple[str, int], offers: tuple[str, ...], render_workers: int
                        ) -> dict[str, Any]:
    """A member's capabilities: the leader it joins (Thespian's convention address) and what it offers."""
    return {CAP_ROLE: "member", CAP_SYSTEM: system, CONVENTION_ADDRESS: f"{leader[0]}:{leader[1]}",
            CAP_OFFERS: ",".join(offers), CAP_RENDER_WORKERS: render_workers, CAP_INCARNATION: uuid.uuid4().hex}


def hosts(capabilities: Mapping[str, Any], requirements: Mapping[str, Any] | None) -> bool:
    """The `actorSystemCapabilityCheck` of placed actors: the system the creator named, else only the leader."""
    wanted = (requirements or {}).get(CAP_SYSTEM)
    if wanted:
        return capabilities.get(CAP_SYSTEM) == wanted
    return capabilities.get(CAP_ROLE, "leader") == "leader"


def send_within(actor: Any, target: Any, msg: Any, seconds: float = MEMBER_SEND_S) -> None:
    """Send from actor, giving up after seconds: a member that froze (or vanished without a TCP reset) must not hold
    up the sender's other mail. Thespian lets an actor have 20 sends in flight; the rest wait behind them, for up
    to its 5-minute transmit limit."""
    from thespian.system.transport import TransmitIntent

    manager = actor._myRef  # Thespian's own send, with a transmit limit of our choosing
    manager._send_intent(TransmitIntent(target, msg, onError=manager.actor_send_fail,
                                        maxPeriod=timedelta(seconds=seconds)))


def requirements_for(system: str) -> dict[str, str] | None:
    """`targetActorRequirements` that place an actor on system (None: here, on the leader)."""
    return None if system == this_system() else {CAP_SYSTEM: system}


def member_view(system: str, capabilities: Mapping[str, Any]) -> MemberView:
    """A member that just joined, from its Thespian capabilities (no heartbeat yet)."""
    offers = [o for o in str(capabilities.get(CAP_OFFERS, "")).split(",") if o in OFFERS]
    return MemberView(system=system, role="member", offers=offers,
                      render_workers=int(capabilities.get(CAP_RENDER_WORKERS) or 0), state="joining")


class Placement:
    """The choosing side, kept by the router and the pool: which members take which work, from Root's Members."""

    def __init__(self) -> None:
        self.members: dict[str, MemberView] = {}
        self.suspects: dict[str, float] = {}  # system → monotonic time until which it gets no new work

    def update(self, msg: Members) -> set[str]:
        """Take Root's latest view; the systems that were usable and are no longer (their actors are gone)."""
        before = {s for s, m in self.members.items() if m.state in ("alive", "unusable")}
        self.members = {m.system: m for m in msg.members}
        now_alive = {s for s, m in self.members.items() if m.state in ("alive", "unusable")}
        return before - now_alive

    def suspect(self, system: str) -> None:
        """A creation on system failed: give it no new work for a while (it may have died unnoticed so far)."""
        if system != this_system():
            self.suspects[system] = time.monotonic() + SUSPECT_S

    def usable(self, offer: str) -> list[MemberView]:
        """Members alive and offering this kind of work, not under suspicion; oldest first."""
        t = time.monotonic()
        return [m for m in self.members.values()
                if m.state == "alive" and offer in m.offers and self.suspects.get(m.system, 0) <= t]

    def choose(self, offer: str, load: Mapping[str, int]) -> str:
        """The member with the least load that takes this work; this system when none does."""
        candidates = self.usable(offer)
        if not candidates:
            return this_system()
        return min(candidates, key=lambda m: load.get(m.system, 0)).system

    def pid_alive(self, system: str, pid: int) -> bool:
        """Whether process pid of that system still runs: looked up here, or in the member's last heartbeat."""
        if not system or system == this_system():
            return pid_alive_here(pid)
        member = self.members.get(system)
        return member is not None and member.state in ("alive", "unusable") and pid in member.pids


def pid_alive_here(pid: int) -> bool:
    """Whether process pid runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
