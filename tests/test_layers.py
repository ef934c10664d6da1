"""Imports go one way (DESIGN.md's layer table): cli -> repl/render/server -> chat -> engine/store/personas.

Every import counts, wherever it is written: at the top of a module, inside a function
(the lazy imports that keep `weprompt --help` fast) or under `TYPE_CHECKING`. A lower
layer that names a higher one, even only for a type, is how two layers start to depend
on each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "weprompt_cli"

# layer -> layers it must never import
FORBIDDEN: dict[str, set[str]] = {
    "engine": {"chat", "cli", "store", "repl", "server", "render", "personas", "db", "context", "config"},
    "store": {"engine", "chat", "cli", "repl", "server", "render", "personas", "db"},
    "personas": {"engine", "chat", "cli", "repl", "server", "render", "store", "db"},
    "db": {"engine", "chat", "cli", "repl", "server", "render", "store", "personas"},
    "chat": {"cli", "repl", "server", "render"},
    "render": {"cli", "repl", "server", "engine", "store"},
    "repl": {"cli", "server"},
    "server": {"cli", "repl", "render"},
    "models": {"chat", "cli", "repl", "server", "render", "store"},
    "cluster": {"cli", "repl", "render"},
    "hardware": {"chat", "cli", "repl", "server", "render", "store", "engine", "personas"},
    "params": {"*"},
    "errors": {"*"},
    "atomic": {"*"},
}
BOTTOM_ALLOWED = {"params": {"errors"}, "errors": set(), "atomic": {"errors"}}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    """Every weprompt_cli module `path` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "weprompt_cli" or n.startswith("weprompt_cli.")}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path, name):
            # `from weprompt_cli.engine import load_engine` names the package and a symbol: keep modules only.
            while imported not in modules and "." in imported:
                imported = imported.rpartition(".")[0]
            if imported in modules and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_never_imports_a_layer_above_it(layer: str) -> None:
    graph = _graph()
    bad = []
    for module, targets in graph.items():
        if _layer(module) != layer:
            continue
        for target in targets:
            other = _layer(target)
            if other == layer or other == "":
                continue
            forbidden = FORBIDDEN[layer]
            if ("*" in forbidden and other not in BOTTOM_ALLOWED.get(layer, set())) or other in forbidden:
                bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(sorted(bad))


def test_no_two_modules_import_each_other() -> None:
    graph = _graph()
    pairs = sorted(
        f"{a} <-> {b}"
        for a, targets in graph.items()
        for b in targets
        if a < b and a in graph.get(b, set()) and not (b.startswith(a + ".") or a.startswith(b + "."))
    )
    assert not pairs, "\n".join(pairs)


def test_the_home_is_resolved_in_one_place() -> None:
    callers = sorted(
        str(path.relative_to(PACKAGE.parent))
        for name, path in _modules().items()
        if "resolve_home()" in path.read_text(encoding="utf-8") and name not in ("weprompt_cli.paths",)
    )
    assert callers == ["weprompt_cli/context.py"]
