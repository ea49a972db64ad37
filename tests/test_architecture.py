"""The import graph of `actors` and `supervisors`: layers, no cycle, no private reach.

Every import counts: at module level, under ``TYPE_CHECKING`` and inside functions (read
with `ast`, nothing is imported). docs/architecture.md explains the layers.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("actors", "supervisors")

LAYERS = {
    "supervisors": 0,
    "actors.core": 1,
    "actors.engine": 2,
    "actors.observe": 3,
    "actors.journal": 3,
    "actors.runtime": 4,
    "actors.api": 5,
    "actors.dashboard": 6,
    "actors.cli": 7,
    "actors": 8,
}
"""Rank of each layer: a module imports its own package or layers of a lower rank."""

UPWARD_ALLOWED = {
    # `ActorSystem.serve_dashboard` loads the optional dashboard extra on demand; the
    # dashboard is built on the API. The one edge from a lower layer to a higher one.
    ("actors.api._system", "actors.dashboard"),
}

PYKKA_ADAPTER = "supervisors._actor"
"""The one module allowed to import pykka's private names (tests/test_pykka_adapter.py)."""


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _package(module: str) -> str:
    is_package = MODULES[module].name == "__init__.py"
    return module if is_package else module.rpartition(".")[0]


def _imports(module: str) -> list[tuple[str, int]]:
    """``(imported dotted name, line)`` of every import in ``module``; ``from a import b``
    gives ``a.b``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = _package(module).split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _internal(name: str) -> str | None:
    """The module of ours that importing ``name`` loads, if any."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _layer(module: str) -> str:
    return max(
        (layer for layer in LAYERS if module == layer or module.startswith(layer + ".")), key=len
    )


def _edges() -> set[tuple[str, str]]:
    return {
        (module, target)
        for module in MODULES
        for name, _ in _imports(module)
        if (target := _internal(name)) is not None and target != module
    }


def test_the_layer_table_covers_every_module() -> None:
    assert {_layer(module) for module in MODULES} <= set(LAYERS)
    packages = {_package(module) for module in MODULES}
    assert {p for p in packages if p.count(".") <= 1} <= set(LAYERS)


def test_there_is_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for source, target in _edges():
        if (source, _layer(target)) not in UPWARD_ALLOWED:
            graph[source].add(target)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(reversed(exc.args[1]))}")


def test_no_layer_imports_a_higher_one() -> None:
    wrong = []
    for source, target in sorted(_edges()):
        mine, theirs = _layer(source), _layer(target)
        if mine == theirs or (source, theirs) in UPWARD_ALLOWED:
            continue
        if LAYERS[theirs] >= LAYERS[mine]:
            wrong.append(f"{source} ({mine}) imports {target} ({theirs})")
    assert wrong == []


def _private(name: str, own_package: str) -> bool:
    """Whether ``name`` reaches a private module or attribute outside ``own_package``."""
    if name == own_package or name.startswith(own_package + "."):
        return False
    return any(part.startswith("_") and not part.startswith("__") for part in name.split("."))


def test_no_module_imports_a_private_name_of_another_package() -> None:
    wrong = []
    for module in sorted(MODULES):
        for name, line in _imports(module):
            if not _private(name, _package(module)):
                continue
            if module == PYKKA_ADAPTER and name.startswith("pykka."):
                continue
            wrong.append(f"{module}:{line} imports {name}")
    assert wrong == []


def test_the_checks_see_what_they_must_see() -> None:
    """The walker finds imports under TYPE_CHECKING and inside functions."""
    names = {name for name, _ in _imports("actors.api._system")}
    assert {"actors.dashboard.DashboardServer", "supervisors.Clock"} <= names
    assert _private("actors.core._errors.ConfigError", "actors.engine")
    assert not _private("actors.engine._record.TaskRecord", "actors.engine")
    assert not _private("actors.runtime.messages.Submit", "actors.api")
    assert _layer("actors.engine._engine") == "actors.engine"
    assert _layer("actors.__main__") == "actors"
