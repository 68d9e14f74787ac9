"""The import graph of ``msanet_lib`` points one way, down (docs/ARCHITECTURE.md), with no cycle.

Every ``import`` counts, also those inside functions. The commands (``*/__main__.py``,
``demo.py``) sit on top and may import any layer, inside their functions too (after parsing, so
``--help`` answers without importing every layer: docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import msanet_lib

PACKAGE = Path(msanet_lib.__file__).parent

# Lower numbers are lower layers; a package may import only from lower layers (and itself).
LAYERS = {
    "runtime": 0, "utils": 0,
    "backbones": 1, "modules": 1,
    "model": 2,
    "data": 3,
    "viz": 4,
    "evaluation": 5,
    "training": 6,
    "course": 7,
}
COMMANDS = ("__main__", "demo")


def _module_name(path: Path) -> str:
    parts = ("msanet_lib", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the msanet_lib modules it imports (``from a import b`` counts a.b if a module)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _layer_of(module: str) -> tuple[str, int | None]:
    parts = module.split(".")
    if parts[-1] in COMMANDS:
        return parts[-1], None
    top = parts[1] if len(parts) > 1 else "__init__"
    return top, LAYERS.get(top)


def test_every_package_has_a_layer() -> None:
    tops = {_layer_of(m)[0] for m in import_graph()} - {*COMMANDS, "__init__"}
    assert tops <= set(LAYERS), f"packages without a layer: {sorted(tops - set(LAYERS))}"


def test_imports_point_down() -> None:
    upward = []
    for module, targets in import_graph().items():
        top, layer = _layer_of(module)
        if layer is None or top == "__init__":
            continue  # commands may import anything; the package root imports nothing heavy
        for target in targets:
            t_top, t_layer = _layer_of(target)
            if t_top == "__init__" or t_top == top:
                continue
            if t_layer is None or t_layer >= layer:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that do not point down:\n" + "\n".join(sorted(upward))


def test_no_import_cycle_between_modules() -> None:
    graph = import_graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_runtime_layer_imports_nothing_of_the_project() -> None:
    assert not import_graph()["msanet_lib.runtime"]


# Inside a function, outside the commands, a module imports only what may be missing: the
# optional extras (pycocotools: coco; tensorboard; ipywidgets/IPython: the course in Jupyter)
# and pyplot, whose import picks a GUI backend and is wanted only where a figure is shown inline.
OPTIONAL_IMPORTS = ("pycocotools", "torch.utils.tensorboard", "ipywidgets", "IPython",
                    "matplotlib.pyplot")


def function_level_imports() -> list[str]:
    """``module:line imported`` for every import inside a function of a non-command module."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if module.split(".")[-1] in COMMANDS:
            continue
        for func in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom) and node.module:
                    found.append((module, node.lineno, node.module))
                elif isinstance(node, ast.Import):
                    found += [(module, node.lineno, a.name) for a in node.names]
    return [f"{m}:{line} {name}" for m, line, name in found
            if not any(name == o or name.startswith(o + ".") for o in OPTIONAL_IMPORTS)]


def test_imports_inside_functions_are_only_optional_dependencies() -> None:
    inside = function_level_imports()
    assert not inside, ("import these at the top of the module (or add an optional "
                        "dependency to OPTIONAL_IMPORTS):\n" + "\n".join(inside))
