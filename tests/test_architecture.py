"""The house rules of docs/architecture.md: no import circles in the core, no module over 450
lines, torch and transformers imported at module level only where training needs them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

CORE = REPO / "wake2vec"
MAX_LINES = 450
HEAVY = ("torch", "transformers")


def _modules() -> dict[str, Path]:
    found = {}
    for path in CORE.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the core modules it imports anywhere in its text (inside functions too)."""

    def resolve(target: str) -> str | None:
        parts = target.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in modules:
                return ".".join(parts[:end])
        return None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                if target.startswith("wake2vec.") or target == "wake2vec":
                    found = resolve(target)
                    if found and found != name and (found != "wake2vec" or target == "wake2vec"):
                        graph[name].add(found)
    return graph


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_core_has_no_import_circle():
    assert _circle(_graph(_modules())) is None


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _circle(graph) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("root", ["wake2vec", "plugins"])
def test_no_module_is_over_the_house_limit(root):
    long = {str(p.relative_to(REPO)): n for p in (REPO / root).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_torch_and_transformers_load_at_module_level_only_in_training():
    heavy = []
    for name, path in _modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            if any(n.split(".")[0] in HEAVY for n in names) and not name.startswith("wake2vec.training."):
                heavy.append(name)
    assert heavy == []
