"""The project as a wheel: `pip wheel .` installed in a fresh venv starts the service and serves the console.

The wheel is built from a copy of the sources (nothing else of the checkout beside it) and installed with pip into
a venv made here; the libraries it depends on are taken from the suite's own venv by a path file, so nothing of
ours is importable but what the wheel put there. An operator made with the wheel's `shop-admin` logs in to the
console and gets its page, script and stylesheet — package data, not files of a checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_console_actions import Console
from tests.harness import REPO, Launcher

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PASSWORD = "wheel-console-pass"
SOURCES = ("pyproject.toml", "README.md", "launcher.py", "protocol", "core", "observability", "imaging", "persistence",
           "integrations", "executors", "web", "actors", "cluster", "standins")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv with the project's wheel installed in it."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--quiet", "-w", str(root / "dist")
                            ], cwd=source, capture_output=True, text=True, timeout=240)
    assert built.returncode == 0, built.stderr
    wheel = next((root / "dist").glob("retouch_shop_service-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    fresh = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                capture_output=True, text=True, check=True, timeout=30).stdout.strip())
    # The suite's venv lends its libraries: its own .pth files (our editable install among them) are not read.
    (fresh / "libraries.pth").write_text(sysconfig.get_path("purelib") + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet",
                           str(wheel)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    shutil.rmtree(source)
    return python


@pytest.fixture(scope="module")
def shop(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("wheel-shop") / "shop", command=[str(installed), "-m", "launcher"])
    launcher.add_operator("wen", PASSWORD)  # the wheel's own shop-admin
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def test_every_module_comes_from_the_wheel_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run([str(installed), "-c", "import launcher, web.app, actors.root, executors.work; "
                            "print(launcher.__file__, web.app.__file__, actors.root.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert where.returncode == 0, where.stderr
    files = where.stdout.split()
    assert files and all(f.startswith(str(installed.parent.parent)) for f in files), files


def test_the_wheel_serves_the_console_to_an_operator(shop: Launcher) -> None:
    console = Console(shop.api)
    console.login("wen", PASSWORD)
    status, headers, page = console.request("GET", "/console")
    assert status == 200 and headers["Content-Type"].startswith("text/html"), (status, page)
    scripts = [name for name in ("console.js", "console.css") if f"/console/static/{name}" in page]
    assert scripts == ["console.js", "console.css"], page[:500]
    for name, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
        status, headers, body = console.request("GET", f"/console/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind) and len(body) > 1000, (name, status)
    status, _, snapshot = console.request("GET", "/console/api/snapshot")
    assert status == 200 and snapshot["code"] == 200
    status, headers, docs = console.request("GET", "/api/docs")
    assert status == 200 and "openapi.json" in docs
