"""The package's layers, checked from its source: imports run downward only,
there are no import cycles, and only the command-line layer touches Click or tqdm.

Layers, top to bottom (see the package docstring of ``spmcli``)::

    cli, commands                 the command line
    batch, tasks                  running per-image work (serial, pool, cluster)
    restoration | inspection      applications of the sparse model (never each other)
    sparse                        OMP, K-SVD, dictionaries, patches
    io                            images, atomic writes
    errors, metrics, _version, _lazy, _allocator
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "spmcli"

# Top-level part of a module's name (after "spmcli.") -> (layer, rank). A module may import
# its own layer or a layer of lower rank; restoration and inspection share a rank but not a layer.
LAYERS = {
    "__main__": ("command line", 6),
    "cli": ("command line", 6),
    "commands": ("command line", 6),
    "batch": ("batch", 5),
    "tasks": ("batch", 5),
    "restoration": ("restoration", 3),
    "inspection": ("inspection", 3),
    "sparse": ("sparse", 2),
    "io": ("io", 1),
    "errors": ("base", 0),
    "metrics": ("base", 0),
    "_version": ("base", 0),
    "_lazy": ("base", 0),
    "_allocator": ("base", 0),
}
CLI_ONLY = ("click", "tqdm")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, anywhere in its body (lazy imports count too)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # "from . import x" may import the submodule x.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def layer_of(name: str) -> tuple[str, int] | None:
    parts = name.split(".")
    if parts[0] != "spmcli" or len(parts) == 1:
        return None
    top = parts[1]
    if top not in LAYERS:
        raise AssertionError(f"{name}: module in no layer; add it to LAYERS in {Path(__file__).name}")
    return LAYERS[top]


def internal_edges() -> dict[str, set[str]]:
    modules = all_modules()
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges[name] = {target for target in imports_of(name, path) if target in modules and target != name}
    return edges


def test_every_module_has_a_layer():
    for name in all_modules():
        if name != "spmcli":
            layer_of(name)


def test_imports_run_downward_only():
    problems = []
    for source, targets in internal_edges().items():
        if source == "spmcli":
            continue  # the package's own lazy re-exports
        source_layer, source_rank = layer_of(source)
        for target in targets:
            if target == "spmcli":
                problems.append(f"{source} imports the top-level package (import what you need from its module)")
                continue
            target_layer, target_rank = layer_of(target)
            if target_layer != source_layer and target_rank >= source_rank:
                problems.append(f"{source} (layer {source_layer}) imports {target} (layer {target_layer})")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    edges = internal_edges()
    # Package __init__ files re-export lazily; a module importing its own package's
    # __init__ is not a cycle in practice, but we forbid it anyway by counting it.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for successor in edges.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("library", CLI_ONLY)
def test_click_and_tqdm_only_in_the_command_line_layer(library):
    offenders = []
    for name, path in all_modules().items():
        layer = layer_of(name)
        if layer is not None and layer[0] == "command line":
            continue
        if any(target == library or target.startswith(library + ".") for target in imports_of(name, path)):
            offenders.append(name)
    assert not offenders, f"{library} imported below the command line: {offenders}"


def test_the_guard_sees_an_upward_import(tmp_path, monkeypatch):
    # The guard itself must be able to fail: a sparse module importing restoration is caught.
    fake = tmp_path / "spmcli"
    (fake / "sparse").mkdir(parents=True)
    (fake / "restoration").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "sparse" / "__init__.py").write_text("")
    (fake / "restoration" / "__init__.py").write_text("")
    (fake / "restoration" / "wiener.py").write_text("X = 1\n")
    (fake / "sparse" / "omp.py").write_text("def f():\n    from ..restoration.wiener import X\n    return X\n")
    monkeypatch.setitem(globals(), "PACKAGE_ROOT", fake)
    with pytest.raises(AssertionError, match=r"spmcli.sparse.omp \(layer sparse\) imports spmcli.restoration.wiener"):
        test_imports_run_downward_only()
    (fake / "restoration" / "wiener.py").write_text("from ..sparse.omp import f\nX = 1\n")
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycles()
    (fake / "sparse" / "omp.py").write_text("import tqdm\n")
    with pytest.raises(AssertionError, match="tqdm imported below"):
        test_click_and_tqdm_only_in_the_command_line_layer("tqdm")
