"""Collection support for tests/core: same-named test modules in sibling test folders.

tests/core/test_tianwang.py and tests/protocol/test_tianwang.py share a basename and the test folders
are not packages, so under pytest's default ("prepend") import mode both would import as the
top-level module ``test_tianwang`` and the second would fail with "import file mismatch".
Before a test module of this folder is imported, a same-named module loaded from another folder is
forgotten — what pytest itself does for conftest.py files.
"""

from __future__ import annotations

import sys
from pathlib import Path


def pytest_pycollect_makemodule(module_path: Path, parent: object) -> None:
    """Forget a stale same-named test module; the default collector then imports this one."""
    loaded = sys.modules.get(module_path.stem)
    loaded_file = getattr(loaded, "__file__", None) if loaded is not None else None
    if loaded_file is not None and Path(loaded_file).resolve() != module_path.resolve():
        del sys.modules[module_path.stem]
