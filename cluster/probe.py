"""What a system of the convention finds out on its own host: its processes, and whether it shares the leader's
DATA_DIR (the leader writes a token there; each member's probe reads it back)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

from cluster import placement
from protocol.convention import MemberView

TOKEN_FILE = ".convention-token"


def group_pids(pgid: int) -> list[int]:
    """Pids of the running (not zombie) processes of a process group on this host."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def running(pid: int) -> bool:
    """Whether pid runs (a zombie waiting for its parent does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def exists(pid: int) -> bool:
    """Whether process pid exists on this host (a zombie does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def write_token(data_dir: Path) -> str:
    """A new token, written into the leader's DATA_DIR: a member that reads it back there shares the directory."""
    token = uuid.uuid4().hex
    (data_dir / TOKEN_FILE).write_text(token)
    return token


def data_dir_problem(data_dir: str, token: str, mine: str = "") -> str:
    """Empty when the leader's DATA_DIR is this member's too (mine: the member's setting) and holds the leader's
    token here; else what is wrong."""
    if mine and mine != data_dir:
        return (f"DATA_DIR here is {mine}, the leader's is {data_dir}: mount the shared storage at the same path on "
                f"every host and set DATA_DIR to it")
    try:
        found = (Path(data_dir) / TOKEN_FILE).read_text().strip()
    except OSError as exc:
        return f"the leader's DATA_DIR {data_dir} is not readable here ({exc.strerror or exc}): share it"
    if found != token:
        return f"DATA_DIR {data_dir} here is not the leader's: mount the same storage at that path"
    return ""


def leader_view(render_workers: int) -> MemberView:
    """This system as the leader of its convention, alive from now."""
    return MemberView(system=placement.this_system(), role="leader", offers=list(placement.OFFERS),
                      render_workers=render_workers, host=socket.gethostname(), state="alive",
                      alive_since=time.time(), pgid=os.getpgid(0))
