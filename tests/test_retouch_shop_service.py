"""The systemd unit at the repository root: systemd accepts it, and it says what running the service needs."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from cluster.processes import SHUTDOWN_GRACE_S
from tests.harness import REPO

UNIT = REPO / "retouch-shop.service"
INSTALL_DIR = "/opt/retouch-shop"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  (systemd keys are case-sensitive)
    parser.read_string(UNIT.read_text())
    return parser


def environment(service: configparser.SectionProxy) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in service["Environment"].split())


def test_the_unit_runs_the_launcher_from_the_install_dir_as_its_own_user() -> None:
    service = unit()["Service"]
    assert service["ExecStart"] == f"{INSTALL_DIR}/.venv/bin/python {INSTALL_DIR}/launcher.py"
    assert service["WorkingDirectory"] == INSTALL_DIR
    assert service["User"] == service["Group"] == "retouch-shop"
    assert service["EnvironmentFile"].lstrip("-").startswith("/etc/retouch-shop/")
    assert environment(service)["DATA_DIR"] == "/var/lib/retouch-shop"
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_the_unit_restarts_on_failure_but_not_on_a_refused_configuration() -> None:
    service = unit()["Service"]
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # the launcher's exit status when it refuses to start


def test_stopping_reaches_every_thespian_process_after_the_launchers_own_shutdown() -> None:
    service = unit()["Service"]
    assert service["KillMode"] in ("mixed", "control-group")  # the whole control group, not the launcher alone
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) >= SHUTDOWN_GRACE_S + 10  # actors, then the stand-ins' 3 s, with room


def test_the_hardening_leaves_data_dir_writable_and_nothing_else() -> None:
    service = unit()["Service"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert environment(service)["DATA_DIR"] in service["ReadWritePaths"].split()
    assert service["StateDirectory"] == "retouch-shop"
    assert "MemoryDenyWriteExecute" not in service  # onnxruntime (offline OCR) maps executable memory


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd); the structure is checked above")
    # verify checks that ExecStart's program exists: point the install dir at this checkout.
    copy = tmp_path / "retouch-shop.service"
    copy.write_text(UNIT.read_text().replace(INSTALL_DIR, str(REPO)))
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv in this checkout for ExecStart to point at")
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr  # warnings (unknown keys) fail too
