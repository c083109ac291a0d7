"""The package's import structure: the layer rules of docs/architecture.md.

Reads every module of ``src/clusterlens`` with :mod:`ast` (nothing is
imported) and fails on:

- an import of ``clusterlens.distributed`` inside ``clusterlens.cluster`` (the
  Dask backend plugs into the engine through its public protocol);
- an import of a private name (``_x``) from another subpackage;
- an import cycle between modules;
- library code importing ``clusterlens.cli``;
- ``clusterlens.report`` importing ``clusterlens.pipelines``;
- a Label Studio task or config built outside ``io/_export.py`` (one exporter);
- a CLI command opening its staged output folder itself instead of going
  through the skeleton of ``cli/_run.py``.

What counts as an import: every ``import`` / ``from ... import`` statement
that runs, at module level *and* inside functions or methods (a deferred
import still ties two modules together, and is the usual way a cycle hides).
Imports under ``if TYPE_CHECKING:`` are not counted: they never run.
``from pkg import name`` is an edge to ``pkg.name`` when that is a module,
else to ``pkg`` (its ``__init__``). Importing ``pkg.mod`` is not counted as
an edge to ``pkg`` (Python runs the package's ``__init__`` first, but that
is how every package works, not a dependency of ``mod``'s author).
Strings given to ``importlib.import_module`` (the lazy re-exports of
``clusterlens/__init__.py``) are not imports here.

Issue #22.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "clusterlens"

# Today's known violations, each with its reason. The goal is an empty list:
# remove an entry when it is fixed (an entry that no longer occurs fails).
ALLOWED_CLUSTER_DISTRIBUTED: dict[str, str] = {}
ALLOWED_PRIVATE: dict[tuple[str, str], str] = {}
#: The layers of docs/architecture.md, lowest first ("" is the package's own
#: top-level modules: _config, exceptions, typing). A module imports only from
#: its own layer or a lower one, type-only imports included.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "utils"),
    ("io", "metrics"),
    ("features", "cluster"),
    ("vocab", "anchors", "label_issues", "topics", "deep", "curate", "distributed"),
    ("report",),
    ("pipelines",),
    ("app",),
    ("cli",),
)
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}
ALLOWED_CYCLES: dict[frozenset[str], str] = {}


@dataclass(frozen=True)
class Edge:
    """``importer`` imports ``name`` from module ``target`` (line ``line``)."""

    importer: str
    target: str
    name: str | None
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PKG).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _import_nodes(
    tree: ast.AST, type_checking: bool = False
) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that runs (module level or in a function).

    With ``type_checking`` also those under ``if TYPE_CHECKING:``.
    """
    out: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if (
                isinstance(child, ast.If)
                and _is_type_checking(child)
                and not type_checking
            ):
                for sub in child.orelse:
                    visit_stmt(sub)
                continue
            visit_stmt(child)

    def visit_stmt(child: ast.AST) -> None:
        if isinstance(child, ast.Import | ast.ImportFrom):
            out.append(child)
        visit(child)

    visit(tree)
    return out


def _edges(modules: dict[str, Path], type_checking: bool = False) -> list[Edge]:
    edges = []
    for mod, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _import_nodes(tree, type_checking):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == PKG or alias.name.startswith(PKG + "."):
                        edges.append(Edge(mod, alias.name, None, node.lineno))
                continue
            if node.level or not node.module:
                continue  # relative imports are banned by ruff (TID252)
            if not (node.module == PKG or node.module.startswith(PKG + ".")):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                target = sub if sub in modules else node.module
                edges.append(Edge(mod, target, alias.name, node.lineno))
    return edges


def _subpackage(mod: str) -> str:
    """``clusterlens.cluster._driver`` -> ``cluster``; top-level modules -> ``""``."""
    parts = mod.split(".")
    if len(parts) == 1:
        return ""
    return parts[1] if f"{PKG}.{parts[1]}" in _PACKAGES else ""


_MODULES = _modules()
_PACKAGES = {m for m, p in _MODULES.items() if p.name == "__init__.py"}
_EDGES = _edges(_MODULES)
# what a reader sees: type-only imports are arrows between layers too
_ALL_EDGES = _edges(_MODULES, type_checking=True)


def _cycles(edges: list[Edge], modules: Iterable[str]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for e in edges:
        if e.target in graph and e.target != e.importer:
            graph[e.importer].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[frozenset[str]] = []
    counter = 0

    def strong(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _where(e: Edge) -> str:
    return f"{e.importer} (line {e.line}) imports {e.name or e.target} from {e.target}"


def test_modules_found():
    assert f"{PKG}.cluster._driver" in _MODULES
    assert len(_EDGES) > 100


def test_cluster_never_imports_distributed():
    found = [
        e
        for e in _EDGES
        if _subpackage(e.importer) == "cluster"
        and (e.target + ".").startswith(f"{PKG}.distributed.")
    ]
    bad = [_where(e) for e in found if e.importer not in ALLOWED_CLUSTER_DISTRIBUTED]
    assert not bad, (
        "clusterlens.cluster imports clusterlens.distributed:\n" + "\n".join(bad)
    )
    gone = sorted(set(ALLOWED_CLUSTER_DISTRIBUTED) - {e.importer for e in found})
    assert not gone, f"fixed: remove from ALLOWED_CLUSTER_DISTRIBUTED: {gone}"


def test_library_never_imports_cli():
    bad = [
        _where(e)
        for e in _ALL_EDGES
        if _subpackage(e.importer) != "cli"
        and (e.target + ".").startswith(f"{PKG}.cli.")
    ]
    assert not bad, "library code imports clusterlens.cli:\n" + "\n".join(bad)


def _layer(mod: str) -> int:
    sub = _subpackage(mod)
    return next(i for i, names in enumerate(LAYERS) if sub in names)


def test_every_subpackage_has_a_layer():
    subs = {_subpackage(m) for m in _MODULES}
    placed = {name for names in LAYERS for name in names}
    assert subs <= placed, f"put these in LAYERS: {sorted(subs - placed)}"


def test_imports_point_down_the_layers():
    found = {
        (e.importer, e.target): e
        for e in _ALL_EDGES
        if e.target in _MODULES and _layer(e.target) > _layer(e.importer)
    }
    new = sorted(k for k in found if k not in ALLOWED_UPWARD)
    assert not new, "imports up the layers (see LAYERS):\n" + "\n".join(
        _where(found[k]) for k in new
    )
    gone = sorted(k for k in ALLOWED_UPWARD if k not in found)
    assert not gone, f"fixed: remove from ALLOWED_UPWARD: {gone}"


def _private_imports() -> dict[tuple[str, str], Edge]:
    """``(importer, target.name)`` of private names imported across subpackages."""
    out = {}
    for e in _EDGES:
        if _subpackage(e.importer) == _subpackage(e.target):
            continue
        # ``import clusterlens.x._y`` binds no private name; a private module
        # path in ``from clusterlens.x._y import public`` is not a name either.
        name = e.name
        if name is not None and name.startswith("_") and not name.startswith("__"):
            out[(e.importer, f"{e.target}:{name}")] = e
    return out


def test_no_private_names_across_subpackages():
    found = _private_imports()
    new = sorted(k for k in found if k not in ALLOWED_PRIVATE)
    assert not new, (
        "private names imported from another subpackage (make them public in "
        "their module's __all__, or move the code):\n"
        + "\n".join(_where(found[k]) for k in new)
    )
    gone = sorted(k for k in ALLOWED_PRIVATE if k not in found)
    assert not gone, f"fixed: remove from ALLOWED_PRIVATE: {gone}"


def test_no_import_cycles():
    found = _cycles(_EDGES, _MODULES)
    new = [c for c in found if c not in ALLOWED_CYCLES]
    msgs = []
    for comp in new:
        inner = [_where(e) for e in _EDGES if e.importer in comp and e.target in comp]
        msgs.append("cycle among:\n  " + "\n  ".join(sorted(inner)))
    assert not new, "\n".join(msgs)
    gone = [sorted(c) for c in ALLOWED_CYCLES if c not in found]
    assert not gone, f"fixed: remove from ALLOWED_CYCLES: {gone}"


@pytest.mark.parametrize(
    ("source", "n_cycles"),
    [
        ("a imports b; b imports a", 1),
        ("a imports b; b imports c", 0),
    ],
)
def test_cycle_finder_on_toy_graphs(source, n_cycles):
    edges = []
    for stmt in source.split("; "):
        a, _, b = stmt.split()
        edges.append(Edge(f"{PKG}.cluster._{a}", f"{PKG}.cluster._{b}", None, 1))
    modules = [f"{PKG}.cluster._{m}" for m in "abc"]
    assert len(_cycles(edges, modules)) == n_cycles


def test_report_never_imports_pipelines():
    """The report takes what it draws as arguments (issue #22: ``BoxSamples``)."""
    bad = [
        _where(e)
        for e in _ALL_EDGES
        if _subpackage(e.importer) == "report"
        and (e.target + ".").startswith(f"{PKG}.pipelines.")
    ]
    assert not bad, "clusterlens.report imports clusterlens.pipelines:\n" + "\n".join(
        bad
    )


def _modules_with_string(*needles: str) -> dict[str, set[str]]:
    """``needle -> modules`` whose string constants (not docstrings) contain it."""
    found: dict[str, set[str]] = {n: set() for n in needles}
    scopes = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
    for mod, path in _MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        docs = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, scopes)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docs
            ):
                for n in needles:
                    if n in node.value:
                        found[n].add(mod)
    return found


def test_one_label_studio_exporter():
    """Every Label Studio task and labelling config is built in ``io/_export.py``.

    (``pipelines/label_issues.py`` held a second exporter beside it; issue #22.)
    """
    found = _modules_with_string("/data/local-files/", "rectanglelabels", "<View>")
    bad = {n: sorted(m - {f"{PKG}.io._export"}) for n, m in found.items()}
    assert not any(bad.values()), (
        f"Label Studio formats built outside io/_export: {bad}"
    )


def test_commands_write_through_the_skeleton():
    """Only ``cli/_run.py`` opens a staged output folder: every writing command
    goes through its skeleton (stage folder, run, emit) instead of a copy."""
    bad = [
        _where(e)
        for e in _EDGES
        if _subpackage(e.importer) == "cli"
        and e.importer != f"{PKG}.cli._run"
        and e.name == "staged_output_dir"
    ]
    assert not bad, "use clusterlens.cli._run (run_staged, run_command):\n" + "\n".join(
        bad
    )
