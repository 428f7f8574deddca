"""Where a real multiprocTCPBase actor system listens (cluster/thespian_bind.py): the address it was told to use
— loopback, or a second address as a member across hosts would be — and never every interface."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap

import pytest
from thespian.system.transport import IPBase

from cluster import thespian_bind
from tests.harness import REPO, free_port

pytestmark = pytest.mark.timeout(60)

# A system with an actor of its own: the admin, the logger and the actor each listen on a port.
SCRIPT = textwrap.dedent("""
    import json, os, sys
    from thespian.actors import Actor, ActorSystem
    from cluster import thespian_bind
    from tests.harness import listening_addresses, process_group_alive

    class Echo(Actor):
        def receiveMessage(self, msg, sender):
            self.send(sender, msg)

    if sys.argv[1] == "patched":
        thespian_bind.bind_where_reached()
    os.setpgid(0, 0)
    asys = ActorSystem("multiprocTCPBase", {"Admin Port": int(sys.argv[2])}, transientUnique=True)
    try:
        assert asys.ask(asys.createActor(Echo), "hi", 10) == "hi"
        print(json.dumps(sorted(listening_addresses(process_group_alive(os.getpgid(0))))))
    finally:
        asys.shutdown()
""")


def listens(patched: bool, address: str | None) -> set[str]:
    env = {k: v for k, v in os.environ.items() if k != "THESPIAN_BASE_IPADDR"}
    if address:
        env["THESPIAN_BASE_IPADDR"] = address
    done = subprocess.run([sys.executable, "-c", SCRIPT, "patched" if patched else "as-released", str(free_port())],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr[-3000:]
    return {a.rsplit(":", 1)[0] for a in json.loads(done.stdout.strip().splitlines()[-1])}


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2"])
def test_every_socket_listens_on_the_address_it_was_told_only(address: str) -> None:
    assert listens(True, address) == {address}


def test_as_released_thespian_listens_on_every_interface() -> None:
    """What the patch is for: without it the same system takes connections on every address of the host."""
    assert "0.0.0.0" in listens(False, "127.0.0.1")


def test_the_patch_is_for_the_thespian_installed() -> None:
    """An upgrade that changes what is patched fails here first: read its IPBase.py, then update the patch."""
    from importlib.metadata import version

    assert version("thespian") == thespian_bind.WRITTEN_FOR
    source = inspect.getsource(getattr(IPBase.IPActorAddress.__init__, "__wrapped__", IPBase.IPActorAddress.__init__))
    assert "self.bindname = ('', sa[1]) if external else sa" in source


def test_one_host_is_loopback_and_several_hosts_a_private_network() -> None:
    assert thespian_bind.check_address("127.0.0.1") == ""
    assert "trusted" in thespian_bind.check_address("10.0.0.11")
    for public in ("8.8.8.8", "0.0.0.0", "example.com"):
        with pytest.raises(thespian_bind.PublicAddress):
            thespian_bind.check_address(public)
