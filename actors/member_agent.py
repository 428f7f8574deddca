"""The agent on a member system: the leader's probe there, and the member launcher's own watch.

Two instances of one class run on each member. The member launcher creates one to ping (its watchdog)
and to stop the member's process group when the launcher itself is gone, as Root does on the leader.
The leader's Root creates the other (Thespian's registrar pattern: an actor placed on the named
member) and beats it every second: the answer says the member is alive, which processes run there,
and whether the leader's DATA_DIR is the same storage here. A probe whose Root falls silent stops.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

from thespian.actors import Actor, ActorAddress, ActorExitRequest, WakeupMessage

from cluster import placement
from cluster.probe import data_dir_problem, group_pids, running
from protocol.convention import MemberBeat, MemberReport, ProbeStart, StartMember
from protocol.messages import Ping, Pong

CHECK_S = 1.0
ROOT_SILENT_S = 10.0  # a probe that hears no beat for this long belonged to a Root that is gone


class MemberAgent(Actor):
    """Answers the heartbeat of the leader's Root (as its probe) or the pings of the member launcher."""

    @staticmethod
    def actorSystemCapabilityCheck(capabilities: dict[str, Any], requirements: dict[str, Any] | None = None  # noqa: N802
                                   ) -> bool:
        return bool((requirements or {}).get(placement.CAP_SYSTEM)) and placement.hosts(capabilities, requirements)

    def __init__(self) -> None:
        super().__init__()
        self.launcher_pid = 0
        self.probe: ProbeStart | None = None
        self.last_beat = time.monotonic()

    def receiveMessage(self, msg: Any, sender: ActorAddress) -> None:  # noqa: N802 (Thespian's name)
        if isinstance(msg, StartMember):
            self.launcher_pid = msg.launcher_pid
            self.wakeupAfter(CHECK_S, payload="launcher-check")
            self.send(sender, self._pong(0))
        elif isinstance(msg, ProbeStart):
            self.probe = msg
            self.last_beat = time.monotonic()
            self.wakeupAfter(CHECK_S, payload="root-check")
        elif isinstance(msg, MemberBeat):
            self.last_beat = time.monotonic()
            self.send(sender, self._report(msg.nonce))
        elif isinstance(msg, Ping):
            self.send(sender, self._pong(msg.nonce))
        elif isinstance(msg, WakeupMessage):
            self._check(msg.payload)

    def _check(self, what: str) -> None:
        if what == "launcher-check":
            if not running(self.launcher_pid):
                # The member launcher was killed: nothing supervises this system any more.
                os.killpg(os.getpgid(0), signal.SIGKILL)
            self.wakeupAfter(CHECK_S, payload="launcher-check")
        elif what == "root-check":
            if time.monotonic() - self.last_beat > ROOT_SILENT_S:
                self.send(self.myAddress, ActorExitRequest())
            else:
                self.wakeupAfter(CHECK_S, payload="root-check")

    def _pong(self, nonce: int) -> Pong:
        return Pong(nonce=nonce, name=f"member:{placement.this_system()}", kind="member", pid=os.getpid(),
                    pgid=os.getpgid(0))

    def _report(self, nonce: int) -> MemberReport:
        problem = (data_dir_problem(self.probe.data_dir, self.probe.token, placement.member_data_dir())
                   if self.probe is not None else "")
        pgid = os.getpgid(0)
        return MemberReport(nonce=nonce, system=placement.this_system(), host=socket.gethostname(), pgid=pgid,
                            pids=group_pids(pgid), problem=problem)
