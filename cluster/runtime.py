"""Thespian runtime tuning, applied by the launcher before it forks the actor system.

Thespian's TCP transport rebuilds its selector on every loop and registers every open socket,
so an actor that hears from hundreds of conversation actors spends most of its time in
epoll_ctl. By default a sender keeps an idle connection for 20 minutes; closing it after a few
milliseconds (THESPIAN_IDLE_SOCKET_MS; the receiver sees EOF and drops its side too) keeps each
actor's socket count near the number of peers it is actually talking to. Reconnecting on
loopback costs far less than carrying hundreds of idle sockets through every loop (and Linux
reuses loopback TIME_WAIT ports); across hosts, raise it.

A convention member re-registers with its leader every CONVENTION_REREGISTRATION_PERIOD and is declared
dead after CONVENTION_REGISTRATION_MISS_MAX missed ones: 7 min 22 s × 3 by default. At 1 s × 3 a member
killed with SIGKILL is noticed 2.5-4 s later (measured on loopback), for two small messages a second.
"""

from __future__ import annotations

from datetime import timedelta

REREGISTRATION_S = 1.0
MISSES_BEFORE_DEAD = 3
RESTART_S = 2.0  # how soon a member that lost its leader tries again


def tune_thespian(idle_socket_ms: int) -> None:
    """Set the transport's and the convention's module-level knobs; the forked admin and actors inherit them."""
    from thespian.system.admin import convention
    from thespian.system.transport import TCPTransport

    TCPTransport.MAX_IDLE_SOCKET_PERIOD = timedelta(milliseconds=idle_socket_ms)
    # Both sides must agree: the member re-registers at its period, the leader expires it at its own.
    convention.CONVENTION_REREGISTRATION_PERIOD = timedelta(seconds=REREGISTRATION_S)
    convention.CONVENTION_REGISTRATION_MISS_MAX = MISSES_BEFORE_DEAD
    convention.CONVENTION_RESTART_PERIOD = timedelta(seconds=RESTART_S)
    _forget_forwarded_creations(convention.ConventioneerAdmin)


def _forget_forwarded_creations(admin_class: type) -> None:
    """The leader's admin forgets a creation request once it has forwarded it to a member.

    Thespian 4.0.1 files every createActor it is asked for in `_pendingChildren` before it finds that another
    system must do it; the member answers the creator directly, so the entry is never removed: one envelope
    leaked per conversation activated on a member, all answered with errors when the leader shuts down.
    """
    if getattr(admin_class, "_shop_forgets_forwarded", False):
        return
    forward = admin_class._not_compatible

    def _not_compatible(self, envelope):  # type: ignore[no-untyped-def]
        handled = forward(self, envelope)
        for instance in [k for k, v in self._pendingChildren.items() if v and v[0] is envelope]:
            del self._pendingChildren[instance]
        return handled

    admin_class._not_compatible = _not_compatible
    admin_class._shop_forgets_forwarded = True
