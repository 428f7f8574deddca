"""The launcher as a user runs it: refusals, clean shutdown, and state that survives a restart."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.harness import REPO, Launcher, listening_addresses, process_group_alive, task_body, wait_for

pytestmark = [pytest.mark.slow]


def _run_refused(launcher: Launcher, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**launcher.env(), **env}
    return subprocess.run([sys.executable, str(REPO / "launcher.py")], env=full, cwd=launcher.data_dir.parent,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.timeout(60)
def test_refuses_a_taken_http_port(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path / "d")
    with socket.socket() as s:
        s.bind(("127.0.0.1", launcher.api_port))
        s.listen()
        result = _run_refused(launcher)
    assert result.returncode == 2
    assert f"HTTP API port 127.0.0.1:{launcher.api_port} is already in use" in result.stderr


@pytest.mark.timeout(60)
def test_refuses_a_data_dir_it_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    launcher = Launcher(tmp_path / "d")
    result = _run_refused(launcher, DATA_DIR=str(blocker / "data"))
    assert result.returncode == 2
    assert "is not writable" in result.stderr and str(blocker / "data") in result.stderr


@pytest.mark.timeout(60)
def test_refuses_to_bind_off_loopback_without_a_key(tmp_path: Path) -> None:
    result = _run_refused(Launcher(tmp_path / "d"), HTTP_API_HOST="0.0.0.0")
    assert result.returncode == 2
    assert "TIANWANG_API_KEY" in result.stderr


@pytest.mark.timeout(60)
def test_refuses_a_short_secret_and_a_public_actor_address(tmp_path: Path) -> None:
    short = _run_refused(Launcher(tmp_path / "d"), GEMINI_API_KEY="abc123", TIANWANG_API_KEY="k-1")
    assert short.returncode == 2
    assert "GEMINI_API_KEY, TIANWANG_API_KEY: shorter than 8 characters" in short.stderr
    assert "abc123" not in short.stderr
    public = _run_refused(Launcher(tmp_path / "e"), THESPIAN_BASE_IPADDR="8.8.8.8")
    assert public.returncode == 2 and "8.8.8.8 is a public address" in public.stderr


@pytest.mark.timeout(180)
def test_stop_and_start_keeps_tasks_history_and_deadlines(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path / "d")
    try:
        assert "on embedded defaults" in launcher.start().output()
        tz = ZoneInfo("Asia/Shanghai")
        at = (datetime.now(tz) + timedelta(seconds=12)).replace(microsecond=0)
        launcher.post_task(task_body("T_LATER", "cust_r", {"type": "time_reach",
                                                            "time": at.strftime("%Y-%m-%d %H:%M:%S")}))
        launcher.post_task(task_body("T_REPLY", "cust_r", {"type": "customer_reply", "keyword": "好的"}))
        launcher.wait_status("T_LATER", "waiting")
        launcher.wait_status("T_REPLY", "waiting")
        before = launcher.task("T_REPLY")

        took = launcher.stop()
        assert took < 10, f"shutdown took {took:.1f}s"
        assert launcher.leftovers() == []

        launcher.start()
        assert launcher.task("T_REPLY")["history"] == before["history"]
        launcher.customer_says("cust_r", "text", "好的")
        launcher.wait_status("T_REPLY", "completed")
        task = launcher.wait_status("T_LATER", "completed", timeout=30)
        assert datetime.fromisoformat(task["triggered_at"]) >= at
        contents = [d["content"] for d in launcher.deliveries("cust_r")]
        assert sorted(contents) == ["hello from T_LATER", "hello from T_REPLY"]
    finally:
        launcher.stop()
    assert launcher.leftovers() == []


@pytest.mark.timeout(120)
def test_watchdog_restarts_the_system_when_root_or_admin_dies(tmp_path: Path) -> None:
    import os
    import signal

    launcher = Launcher(tmp_path / "d")
    try:
        launcher.start()
        for victim in ("root", "admin"):
            root_pid = launcher.pid_of("root")
            pid = root_pid if victim == "root" else _parent(root_pid)
            os.kill(pid, signal.SIGKILL)
            started = time.monotonic()
            wait_for(lambda: launcher.wait_healthy(30)["data"]["actors"][0]["pid"] != root_pid, 30,  # noqa: B023
                     what="a new Root")
            print(f"{victim} kill: healthy again after {time.monotonic() - started:.2f}s")
        launcher.post_task(task_body("T_AFTER", "cust_w", {"type": "customer_payment"}))
        launcher.wait_status("T_AFTER", "waiting")
    finally:
        launcher.stop()
    assert launcher.leftovers() == []


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


@pytest.mark.timeout(60)
def test_a_launcher_killed_with_sigkill_takes_everything_down(tmp_path: Path) -> None:
    import os
    import signal

    launcher = Launcher(tmp_path / "d")
    try:
        launcher.start()
        assert launcher.proc is not None
        os.kill(launcher.proc.pid, signal.SIGKILL)
        launcher.proc.wait(5)
        wait_for(lambda: launcher.leftovers() == [], 15, 0.1, "actors and simulator gone")
    finally:
        launcher.kill()


def test_a_stand_in_moves_off_a_taken_default_port_but_not_off_a_chosen_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cluster.processes import LaunchError
    from launcher import standin_ports
    from protocol.settings import Settings

    for name in ("IM_SIMULATOR_WS_PORT", "IM_SIMULATOR_HTTP_PORT"):
        monkeypatch.delenv(name, raising=False)
    default = Settings.model_fields["IM_SIMULATOR_WS_PORT"].default
    ports = (("IM_SIMULATOR_WS_PORT", "IM simulator WebSocket"),)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", default))
            s.listen()
        except OSError:
            pass  # somebody else holds it already: just as taken
        assert standin_ports(Settings(_env_file=None), ports).IM_SIMULATOR_WS_PORT == 0
        with pytest.raises(LaunchError, match="already in use"):
            standin_ports(Settings(_env_file=None, IM_SIMULATOR_WS_PORT=default), ports)


@pytest.mark.timeout(60)
def test_refuses_an_admin_port_that_is_also_the_http_port(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path / "d")
    result = _run_refused(launcher, THESPIAN_ADMIN_PORT=str(launcher.api_port))
    assert result.returncode == 2
    assert "THESPIAN_ADMIN_PORT" in result.stderr and "choose another" in result.stderr
    assert launcher.leftovers() == []


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            if entry.name.isdigit() and _parent(int(entry.name)) == pid:
                found.append(int(entry.name))
    return found


def test_every_socket_of_the_service_listens_on_loopback_only(tmp_path: Path) -> None:
    """One host: the actors' ports, the admin's, the logger's, the HTTP API and the stand-ins all on 127.0.0.1 —
    Thespian alone would bind the actors' to every interface (cluster/thespian_bind.py)."""
    launcher = Launcher(tmp_path / "d").start()
    try:
        assert launcher.proc is not None
        pids = [launcher.proc.pid, *_children(launcher.proc.pid),
                *(p for g in launcher.pgids for p in process_group_alive(g))]
        addresses = listening_addresses(pids)
        assert len(addresses) >= 12, addresses  # admin, logger, ten actors and more, HTTP API, two stand-ins
        assert {a.rsplit(":", 1)[0] for a in addresses} == {"127.0.0.1"}, addresses
    finally:
        launcher.stop()


@pytest.mark.timeout(60)
def test_debug_logging_keeps_the_gateway_working_and_shows_websockets(tmp_path: Path) -> None:
    """LOG_LEVEL=DEBUG: the websockets client's records reach the log (Thespian pickles them to its logging
    process) and the customer is still answered."""
    launcher = Launcher(tmp_path / "d", {"LOG_LEVEL": "DEBUG"}).start()
    try:
        launcher.post_task(task_body("T_DEBUG", "c_debug", {"type": "customer_reply", "keyword": "好的"},
                                     {"type": "send_message", "message": "debug ok"}))
        launcher.customer_says("c_debug", "text", "好的")
        wait_for(lambda: launcher.deliveries("c_debug"), 20, 0.1, "the customer answered")
    finally:
        launcher.stop()
    out = launcher.output()
    assert "DEBUG websockets.client" in out and "cannot pickle" not in out
