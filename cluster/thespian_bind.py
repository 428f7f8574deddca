"""Where the actor system listens: the one address it was told to use, never the wildcard (issue 16).

Thespian 4.0.1 binds every actor socket, the admin's and the logger's to ('', port) — every interface — whatever
THESPIAN_BASE_IPADDR says (`IPActorAddress.__init__` in thespian/system/transport/IPBase.py sets
``self.bindname = ('', sa[1]) if external else sa``), and each of those sockets unpickles what arrives. Thespian
has no setting for it, so this module patches that one line's effect: an address binds where it is reached
(its `sockname`). On one host that is 127.0.0.1; across hosts, the address named for the convention, which must
be a private one. The patch is pinned to the release it was written for.
"""

from __future__ import annotations

import importlib.metadata
import ipaddress
import os
from typing import Any

from thespian.system.transport import IPBase

WRITTEN_FOR = "4.0.1"
LOOPBACK = "127.0.0.1"


class ThespianChanged(RuntimeError):
    """The installed Thespian is not the release the binding patch was written for."""


class PublicAddress(ValueError):
    """The actor system was told to listen on an address the internet can reach."""


def bind_where_reached() -> None:
    """Make every Thespian socket bind the address it advertises instead of every interface (idempotent)."""
    version = importlib.metadata.version("thespian")
    if version != WRITTEN_FOR:
        raise ThespianChanged(f"cluster/thespian_bind.py patches Thespian {WRITTEN_FOR}'s IPActorAddress; "
                              f"{version} is installed: read its IPBase.py and update the patch")
    cls: Any = IPBase.IPActorAddress
    if getattr(cls, "_bound_where_reached", False):
        return
    original = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        host, port = self.bindname[0], self.bindname[1]
        if host in ("", "0.0.0.0"):
            reached = self.sockname[0]
            self.bindname = (reached if reached not in ("", "0.0.0.0") else system_address(), port)

    __init__.__wrapped__ = original  # type: ignore[attr-defined]  # Thespian's own, for the pin test
    cls.__init__ = __init__
    cls._bound_where_reached = True


def system_address() -> str:
    """The address this host's actor system uses: THESPIAN_BASE_IPADDR, else loopback (one host)."""
    return os.environ.get("THESPIAN_BASE_IPADDR") or LOOPBACK


def check_address(address: str) -> str:
    """Loopback for one host, a private address across hosts; PublicAddress for anything else. Returns a warning
    to print for a private address (the network must be trusted), else ""."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise PublicAddress(f"THESPIAN_BASE_IPADDR={address!r} is not an IP address") from None
    if ip.is_loopback:
        return ""
    if ip.is_private and not ip.is_unspecified and not ip.is_multicast:
        return (f"the actor system listens on {address}: every host that reaches it can run code as this service "
                f"(Thespian unpickles what arrives); keep that network private and trusted (WireGuard: README)")
    raise PublicAddress(f"THESPIAN_BASE_IPADDR={address} is a public address: the actors' ports would take "
                        f"orders from the internet; use a private network between the hosts (WireGuard: README)")
