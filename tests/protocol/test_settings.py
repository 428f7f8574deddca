"""Settings guards a user meets at start: INGRESS_PROCESSES within its bounds and on a fixed port."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from protocol.settings import INGRESS_PROCESSES_MAX, Settings


def settings(tmp_path: Path, **over: object) -> Settings:
    return Settings(_env_file=None, DATA_DIR=tmp_path, **over)  # type: ignore[arg-type]


def test_one_ingress_process_by_default(tmp_path: Path) -> None:
    assert settings(tmp_path).INGRESS_PROCESSES == 1


@pytest.mark.parametrize("count", [1, 2, INGRESS_PROCESSES_MAX])
def test_ingress_processes_within_bounds_are_taken(tmp_path: Path, count: int) -> None:
    assert count == settings(tmp_path, INGRESS_PROCESSES=count).INGRESS_PROCESSES


@pytest.mark.parametrize("count", [0, -1, INGRESS_PROCESSES_MAX + 1])
def test_ingress_processes_out_of_bounds_are_refused_by_name(tmp_path: Path, count: int) -> None:
    with pytest.raises(ValidationError, match="INGRESS_PROCESSES"):
        settings(tmp_path, INGRESS_PROCESSES=count)


def test_several_ingress_processes_need_a_fixed_port(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="INGRESS_PROCESSES=2 needs a fixed HTTP_API_PORT"):
        settings(tmp_path, INGRESS_PROCESSES=2, HTTP_API_PORT=0)
    assert settings(tmp_path, INGRESS_PROCESSES=1, HTTP_API_PORT=0).HTTP_API_PORT == 0
