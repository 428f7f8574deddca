"""The house (ARCHITECTURE.md, README "Layout"): every import of the product walked, no circle, none pointing up.

Each file is parsed, not imported, so an import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from tests.harness import REPO

PACKAGES = ("protocol", "core", "observability", "imaging", "persistence", "integrations", "executors", "web",
            "actors", "cluster", "standins")
TOP_MODULES = ("launcher",)
# What each layer may import of ours besides itself. Dependencies point one way:
# launcher → cluster → actors → web, executors → persistence, integrations, imaging → core → protocol;
# observability is importable by every layer and imports none.
ALLOWED: dict[str, set[str]] = {
    "protocol": set(),
    "observability": set(),
    "core": {"protocol"},
    "imaging": {"protocol", "core", "observability"},
    "persistence": {"protocol", "core", "observability", "imaging"},
    "integrations": {"protocol", "core", "observability", "imaging", "persistence"},
    "executors": {"protocol", "core", "observability", "imaging", "persistence", "integrations"},
    "web": {"protocol", "core", "observability", "imaging", "persistence", "integrations"},
    "actors": {"protocol", "core", "observability", "imaging", "persistence", "integrations", "executors", "web",
               "cluster"},
    "cluster": {"protocol", "core", "observability", "imaging", "persistence", "integrations", "executors", "actors"},
    "standins": {"protocol", "integrations"},
    "launcher": {"protocol", "core", "observability", "imaging", "persistence", "integrations", "executors", "actors",
                 "cluster", "standins"},
}
# The one import of the web layer an actor makes: the Ingress starts the application.
WEB_FROM_ACTORS = {"actors.ingress"}
# What actors may import of cluster: where placed actors run and who the members are, not the member process.
CLUSTER_FROM_ACTORS = {"cluster.placement", "cluster.membership", "cluster.probe"}
SHELL_MAX_LINES = 250
ACTOR_BASE = {"actors", "actors.base", "actors.bridge"}  # the shells' shared base, not shells themselves


def _modules() -> dict[str, Path]:
    found = {name: REPO / f"{name}.py" for name in TOP_MODULES}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The modules of ours that name imports, wherever in the file the import is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    wanted: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            wanted.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from web import app` imports the module web.app; `from web.base import STATE` the module web.base.
            wanted.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                          for alias in node.names)
    return {_ours(w) for w in wanted if _ours(w)} - {name}


def _ours(imported: str) -> str:
    """The module of ours an import names (its longest prefix that is one), or ""."""
    parts = imported.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in MODULES:
            return ".".join(parts[:end])
    return ""


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> str:
    return module.split(".")[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), each as the files in it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_product_module_is_walked() -> None:
    assert len(MODULES) > 100
    assert {"web.app", "executors.render", "observability.metrics", "cluster.member", "launcher"} <= set(MODULES)


def test_no_file_imports_itself_back_directly_or_round_a_loop() -> None:
    assert _cycles(GRAPH) == []


def test_the_walk_finds_a_loop_when_there_is_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_points_up_the_layers() -> None:
    wrong = [f"{module} imports {target}" for module, targets in sorted(GRAPH.items()) for target in sorted(targets)
             if _layer(target) != _layer(module) and _layer(target) not in ALLOWED[_layer(module)]]
    assert wrong == []


def test_actors_reach_the_web_only_where_the_ingress_starts_it_and_cluster_only_for_placement() -> None:
    web = sorted(m for m, targets in GRAPH.items()
                 if _layer(m) == "actors" and any(_layer(t) == "web" for t in targets))
    assert web == sorted(WEB_FROM_ACTORS)
    cluster = sorted(f"{m} imports {t}" for m, targets in GRAPH.items() if _layer(m) == "actors"
                     for t in targets if _layer(t) == "cluster" and t not in CLUSTER_FROM_ACTORS)
    assert cluster == []


def test_actors_holds_only_actor_shells_of_at_most_250_lines_and_their_base() -> None:
    shells = {m: p for m, p in MODULES.items() if _layer(m) == "actors" and m not in ACTOR_BASE}
    assert len(shells) >= 10
    not_actors = [m for m, p in shells.items() if not _defines_actor(p)]
    assert not_actors == []
    too_long = {m: n for m, p in shells.items() if (n := len(p.read_text().splitlines())) > SHELL_MAX_LINES}
    assert too_long == {}


def _defines_actor(path: Path) -> bool:
    """Whether the file defines an actor: a class deriving from ServiceActor, or from Thespian's Actor."""
    tree = ast.parse(path.read_text())
    return any(isinstance(node, ast.ClassDef) and any(getattr(b, "id", "") in ("ServiceActor", "Actor")
                                                      for b in node.bases) for node in tree.body)


def test_every_package_of_the_house_is_in_the_wheel() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    included = {pattern.rstrip("*") for pattern in config["packages"]["find"]["include"]}
    assert set(PACKAGES) <= included
    assert [p for p in PACKAGES if not (REPO / p / "__init__.py").is_file()] == []  # each a package, not a folder
    assert set(TOP_MODULES) <= set(config["py-modules"])
    assert config["package-data"]["web"] == ["static/*"]
