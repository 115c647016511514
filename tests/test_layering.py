"""The package's imports flow one way: no cycles, no private names, no upward imports.

Read from the source with `ast` (module-level and function-level imports
alike), so a lazy import cannot hide a cycle.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "src" / "transferkit"

# From the bottom up: a module may import from its own layer and the layers below.
# data -> backbone -> model -> recipe/training -> evaluation/report -> workflows -> cli.
LAYERS = [
    ("errors", "version", "specs", "_compat", "_walk", "_lazy", "_quiet", "progress"),
    ("runs", "outputs", "saving", "weights"),
    ("data",),
    ("backbones",),
    ("regularizers",),
    ("models",),
    ("optim",),
    ("training",),
    ("evaluation",),
    ("workflows",),
    ("cli", "__init__"),
]


def modules():
    """`{dotted name: path}` for every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name, path, known):
    """`[(imported module, imported names)]` of one module, resolved to package modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.append((full if full in known else target, alias.name))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names)
    return [(t, n) for t, n in found if t in known and t != name]


GRAPH = {name: imports(name, path, modules()) for name, path in modules().items()}


def layer(name):
    first = name.split(".")[1] if name.count(".") else "__init__"
    for rank, members in enumerate(LAYERS):
        if first in members:
            return rank
    raise AssertionError(f"{name} is in no layer; add its package to LAYERS")


def test_every_module_has_a_layer():
    for name in GRAPH:
        layer(name)


def test_the_imports_have_no_cycle():
    edges = {name: {t for t, _ in found} for name, found in GRAPH.items()}
    state, cycles = {}, []

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_imports_another_modules_private_names():
    private = [f"{name} imports {target}.{imported}" for name, found in GRAPH.items()
               for target, imported in found
               if imported and imported.startswith("_") and not imported.startswith("__")]
    assert not private, "\n".join(private)


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_imports_go_down_the_layers(name):
    upward = [t for t, _ in GRAPH[name] if layer(t) > layer(name)]
    assert not upward, f"{name} (layer {layer(name)}) imports from above: {upward}"
