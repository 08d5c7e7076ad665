"""The package's shape, checked from the source (AST), so it cannot drift.

1. Layers point one way: io -> data, metrics, viz -> models, engine, training, transforms -> tasks -> benchmarks
   -> apps
   (:data:`LAYERS`). A module imports only packages of its own layer or below; packages of one layer never
   import each other in a circle.
2. Imports of cxrkit modules sit at the top of the module. An import inside a function is allowed only with a
   one-line reason on that line (``# lazy: ...``), e.g. an optional extra or the CLI's start-up time; the
   ``cli`` package, whose handlers import their task on demand so that ``cxrkit --help`` stays fast, is
   exempt as a whole.
3. No module is longer than :data:`MAX_LINES` lines, and every subpackage declares ``__all__``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cxrkit"

LAYERS: dict[str, int] = {}
for rank, names in enumerate([
    ["errors", "findings", "io"],
    ["data", "metrics", "viz"],
    ["models", "engine", "training", "transforms"],
    ["classification", "segmentation", "qc", "anatomy", "reports", "stats", "warehouse"],
    ["benchmarks"],
    ["analysis", "batch", "service", "demo", "cli", "api"],
]):
    for n in names:
        LAYERS[n] = rank
LAZY_EXEMPT = {"cli"}
MAX_LINES = 420


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(SRC.rglob("*.py")):
        rel = p.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = p
    return out


def _package(module: str) -> str:
    parts = module.split(".")
    if len(parts) < 2:
        return "<root>"
    return parts[1]


def _imports(path: Path):
    """(imported module, line number, inside a function?) for every ``cxrkit`` import of ``path``."""
    tree = ast.parse(path.read_text())
    out = []

    def visit(node, in_func: bool) -> None:
        for child in ast.iter_child_nodes(node):
            func = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("cxrkit") and not child.level:
                out.append((child.module, child.lineno, in_func))
            elif isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, in_func) for a in child.names if a.name.startswith("cxrkit"))
            visit(child, func)

    visit(tree, False)
    return out


MODULES = _modules()


def test_every_package_has_a_layer():
    packages = {_package(m) for m in MODULES} - {"<root>"}
    top_modules = {p.stem for p in SRC.glob("*.py")} - {"__init__"}
    assert packages | top_modules <= set(LAYERS), sorted((packages | top_modules) - set(LAYERS))


def test_layers_point_one_way_and_packages_form_no_circle():
    bad = []
    edges: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        src = _package(module)
        if src == "<root>":
            continue
        for target, line, _ in _imports(path):
            dst = _package(target)
            if dst in ("<root>", src):
                continue
            if LAYERS[dst] > LAYERS[src]:
                bad.append(f"{path.relative_to(SRC)}:{line}: {src} (layer {LAYERS[src]}) imports {target} "
                           f"(layer {LAYERS[dst]})")
            edges[src].add(dst)
    assert not bad, "upward imports:\n" + "\n".join(bad)
    # no circle among packages
    state: dict[str, int] = {}

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                raise AssertionError("circular package imports: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                dfs(nxt, stack + [nxt])
        state[node] = 2

    for n in sorted(edges):
        if n not in state:
            dfs(n, [n])


def test_imports_inside_functions_give_a_reason():
    bad = []
    for module, path in MODULES.items():
        if _package(module) in LAZY_EXEMPT:
            continue
        lines = path.read_text().splitlines()
        for target, line, in_func in _imports(path):
            if in_func and "# lazy:" not in lines[line - 1]:
                bad.append(f"{path.relative_to(SRC)}:{line}: import of {target} inside a function without '# lazy: <why>'")
    assert not bad, f"{len(bad)} hidden imports:\n" + "\n".join(bad[:60])


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_modules_are_small(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(SRC)} has {n} lines (more than {MAX_LINES}): split it along a concept"


def test_subpackages_declare_all():
    missing = [p.relative_to(SRC).as_posix() for p in SRC.rglob("__init__.py")
               if "__all__" not in p.read_text()]
    assert not missing, missing
