"""The member's agent: the DATA_DIR check that proves a member shares the leader's files, and its process list."""

from __future__ import annotations

import os
from pathlib import Path

from actors.member_agent import TOKEN_FILE, data_dir_problem, group_pids


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
