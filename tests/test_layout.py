"""The package's shape: no module imports one above it (the import graph is layered, leaves
first), no module over 500 lines, no function over 80."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "src" / "biaslab"
#: Layers, leaves first: a module may import modules of its own or lower layers only (and,
#: within a layer, the graph must still be acyclic).
LAYERS = [
    {
        "images",
        "grid",
        "io",
        "models",
        "metrics",
        "toy",
        "denoisers",
        "sections",
        "objectives",
        "layouts",
        "stats",
        "interop",
        "metric_names",
    },
    {"datasets"},
    {
        "sampling",
        "train",
        "classifier",
        "backbones",
        "quality",
        "sae",
        "labellers",
        "attributes",
        "contrasts",
        "claims",
    },
    {"evaluate", "figures", "probe", "difflens", "gather", "pretrained", "pretrained_eval"},
    {"config", "fetch_weights", "cells", "config_reference"},
    {"plan", "difflens_plan", "pretrained_plan"},
    {"budget"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            if node.module:
                deps.add(".".join([*base, node.module]))
            else:
                deps.update(".".join([*base, a.name]) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("biaslab."):
            deps.add(node.module.removeprefix("biaslab."))
    return {d for d in deps if d and d != name}


def _layer(name: str) -> int:
    top = name.split(".")[0]
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


def test_every_module_has_a_layer():
    tops = {n.split(".")[0] for n in _modules()}
    assert tops == set().union(*LAYERS)


def test_no_module_imports_one_above_it():
    graph = {n: _imports(n, p) for n, p in _modules().items()}
    upward = [f"{n} -> {d}" for n, deps in graph.items() for d in deps if _layer(d) > _layer(n)]
    assert not upward, upward
    seen: dict[str, int] = {}

    def visit(n: str, stack: tuple[str, ...]) -> None:
        if seen.get(n) == 2:
            return
        assert seen.get(n) != 1, f"import cycle: {' -> '.join((*stack, n))}"
        seen[n] = 1
        for d in graph.get(n, ()):
            visit(d, (*stack, n))
        seen[n] = 2

    for n in graph:
        visit(n, ())


def test_module_and_function_sizes():
    big, long = [], []
    for name, path in _modules().items():
        text = path.read_text()
        if len(text.splitlines()) > 500:
            big.append(name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if node.end_lineno - node.lineno + 1 > 80:
                    long.append(f"{name}.{node.name}")
    assert not big and not long, (big, long)
