"""Thespian runtime tuning, applied by the launcher before it forks the actor system.

Thespian's TCP transport rebuilds its selector on every loop and registers every open socket,
so an actor that hears from hundreds of conversation actors spends most of its time in
epoll_ctl. By default a sender keeps an idle connection for 20 minutes; closing it after a few
milliseconds (THESPIAN_IDLE_SOCKET_MS; the receiver sees EOF and drops its side too) keeps each
actor's socket count near the number of peers it is actually talking to. Reconnecting on
loopback costs far less than carrying hundreds of idle sockets through every loop (and Linux
reuses loopback TIME_WAIT ports); across hosts, raise it.
"""

from __future__ import annotations

from datetime import timedelta


def tune_thespian(idle_socket_ms: int) -> None:
    """Set the transport's module-level knobs; forked actors inherit them."""
    from thespian.system.transport import TCPTransport

    TCPTransport.MAX_IDLE_SOCKET_PERIOD = timedelta(milliseconds=idle_socket_ms)
