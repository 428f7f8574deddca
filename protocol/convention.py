"""The vocabulary of a convention of actor systems: members as the leader sees them, and the messages about them.

The leader's Root hears from Thespian when a member system joins or leaves, keeps a probe actor on each
member for a heartbeat of its own, and tells the actors that place work on members (the conversations
router, the renderer pool) which members can take what.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from protocol.messages import _Msg

MemberState = Literal["joining", "alive", "unusable", "lost"]


class _System(BaseModel):
    """What is known of one actor system of the convention."""

    system: str = Field(description="the system's id: its admin address, host:port")
    role: Literal["leader", "member"]
    offers: list[str] = Field(default_factory=list, description="what it hosts: conversations, renderer")
    render_workers: int = Field(default=0, description="render workers it runs when it offers renderer")
    host: str = Field(default="", description="its host name, as its probe reports it")
    state: MemberState = Field(description="joining (no heartbeat yet), alive, unusable (see problem), lost")
    problem: str = Field(default="", description="why an unusable member takes no work")
    alive_since: float | None = Field(default=None, description="epoch seconds of its first heartbeat")
    last_seen: float | None = Field(default=None, description="epoch seconds of its latest heartbeat")
    lost_at: float | None = Field(default=None, description="epoch seconds it was declared lost")
    pgid: int = Field(default=0, description="the process group of its actors")


class MemberView(_System):
    """One actor system of the convention (the leader included) as the leader's Root sees it."""

    pids: list[int] = Field(default_factory=list, description="its live processes (for the renderer pool)")


class SystemHealth(_System):
    """One actor system of the convention in /api/health."""

    processes: int = Field(default=0, description="how many processes of its actor system run")


class Members(_Msg):
    """Root → the conversations router and the renderer pool: every member and whether it takes work."""

    msg: Literal["members"] = "members"
    members: list[MemberView] = Field(default_factory=list)


class ProbeStart(_Msg):
    """Root → its probe on a member: who pings it, and the DATA_DIR token that proves the directory is shared."""

    msg: Literal["probe_start"] = "probe_start"
    data_dir: str = Field(description="the leader's DATA_DIR path, which must be the same storage on the member")
    token: str = Field(description="the content of DATA_DIR/.convention-token the leader wrote")


class MemberBeat(_Msg):
    """Root → probe, every heartbeat; answered with MemberReport."""

    msg: Literal["member_beat"] = "member_beat"
    nonce: int


class MemberReport(_Msg):
    """Probe → Root: the member is alive; its host, processes and whether it shares the leader's DATA_DIR."""

    msg: Literal["member_report"] = "member_report"
    nonce: int
    system: str
    host: str
    pgid: int
    pids: list[int]
    problem: str = Field(default="", description="empty when the member can take work")


class StartMember(_Msg):
    """Member launcher → its own agent: stop the system when this launcher is gone."""

    msg: Literal["start_member"] = "start_member"
    launcher_pid: int


class ParentCheck(_Msg):
    """A placed actor on a member → the actor that created it: are you still there? Answered with ParentHere."""

    msg: Literal["parent_check"] = "parent_check"


class ParentHere(_Msg):
    """The creator's answer to ParentCheck."""

    msg: Literal["parent_here"] = "parent_here"


class WorkerStarted(_Msg):
    """Render worker → pool: configured, with its process id (for health reports)."""

    msg: Literal["worker_started"] = "worker_started"
    pid: int
