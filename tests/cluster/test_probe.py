"""What a system learns on its own host: the leader's DATA_DIR token, its processes, the leader's own view."""

from __future__ import annotations

import os
from pathlib import Path

from cluster import placement
from cluster.probe import TOKEN_FILE, data_dir_problem, exists, group_pids, leader_view, running, write_token


def test_the_token_the_leader_writes_is_the_one_a_member_sharing_data_dir_reads(tmp_path: Path) -> None:
    token = write_token(tmp_path)
    assert (tmp_path / TOKEN_FILE).read_text() == token and len(token) == 32
    assert data_dir_problem(str(tmp_path), token) == ""
    assert write_token(tmp_path) != token  # a new one each start


def test_this_process_runs_and_exists() -> None:
    assert running(os.getpid()) and exists(os.getpid())
    assert not running(2**22 + 1) and not exists(2**22 + 1)  # above the kernel's pid_max


def test_the_leader_is_alive_from_now_offering_everything() -> None:
    view = leader_view(render_workers=3)
    assert (view.system, view.role, view.offers, view.render_workers, view.state) == (
        placement.this_system(), "leader", list(placement.OFFERS), 3, "alive")
    assert view.pgid == os.getpgid(0) and view.alive_since is not None and view.host


def test_data_dir_is_shared_when_it_holds_the_leaders_token(tmp_path: Path) -> None:
    (tmp_path / TOKEN_FILE).write_text("abc123\n")
    assert data_dir_problem(str(tmp_path), "abc123") == ""
    assert "not the leader's" in data_dir_problem(str(tmp_path), "another")
    missing = data_dir_problem(str(tmp_path / "elsewhere"), "abc123")
    assert "not readable here" in missing and str(tmp_path / "elsewhere") in missing
    assert data_dir_problem(str(tmp_path), "abc123", mine=str(tmp_path)) == ""
    other = data_dir_problem(str(tmp_path), "abc123", mine="/mnt/other")
    assert "DATA_DIR here is /mnt/other" in other and "same path on every host" in other


def test_the_process_group_is_listed() -> None:
    assert os.getpid() in group_pids(os.getpgid(0))
