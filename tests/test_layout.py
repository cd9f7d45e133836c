"""The package's shape: no module imports one above it (the import graph is layered, leaves
first), no module over 500 lines, no function over 80."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "src" / "biaslab"
#: Layers of subpackages, leaves first: a module may import modules of its own folder or of
#: lower layers only (and within a folder the graph must still be acyclic). A folder is one
#: layer or one capability's wing (``difflens``, ``pretrained``); docs/guide/architecture.md
#: draws this map.
LAYERS = [
    {"base"},
    {"models", "datasets", "stats"},
    {"sampling", "training"},
    {"evaluation"},
    {"difflens", "pretrained", "figures"},
    {"jobs"},
    {"plan"},
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
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("biaslab"):
            module = node.module.removeprefix("biaslab").removeprefix(".")
            for alias in node.names:  # ``from biaslab.figures import toy``: the module toy
                sub = f"{module}.{alias.name}".lstrip(".")
                is_module = (PACKAGE / sub.replace(".", "/")).with_suffix(".py").exists()
                deps.add(sub if is_module else module)
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("biaslab.")]
            deps.update(n.removeprefix("biaslab.") for n in names)
    return {d for d in deps if d and d != name}


def _layer(name: str) -> int:
    top = name.split(".")[0]
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


def test_every_module_has_a_layer():
    """Every module sits in a layer's folder; none at the top of the package."""
    tops = {n.split(".")[0] for n in _modules()}
    assert tops == set().union(*LAYERS)
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert not loose, loose


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
