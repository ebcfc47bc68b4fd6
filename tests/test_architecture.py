"""The import layers: no module imports a higher layer or a sibling of its layer, the import graph
has no cycle, and no late (function-level) import dodges one (only the CLI imports lazily, for
start-up time, and only downwards). The layering is in README "Architecture"."""

from __future__ import annotations

import ast
from pathlib import Path

import diffdebias

ROOT = Path(diffdebias.__file__).parent
# Top to bottom; the packages or modules of one layer are independent of each other, except in
# the last layer (the shared utilities), which only the no-cycle check constrains.
LAYERS: list[tuple[str, ...]] = [
    ("cli",),
    ("quickstart",),
    ("bench", "report"),
    ("targets",),
    ("collect",),
    ("api",),
    ("run",),
    ("recipes", "ddm"),
    ("diffubias",),
    ("stages",),
    ("inference", "audit"),
    ("engine",),
    ("trainers",),
    ("hparams",),
    ("diffusion",),
    ("models",),
    ("data",),
    ("config", "io", "paths", "runtime", "distributed", "state", "energy", "tracking", "errors", "records", "report_text", "cli_common", "runfile", "_version"),
]
LAZY_IMPORTERS = ("diffdebias.cli",)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> list[tuple[str, bool]]:
    """(imported diffdebias module, whether the import is inside a function) of one file."""
    name, is_pkg = module_name(path), path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    tree, out = ast.parse(path.read_text()), []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((a.name, in_function) for a in child.names if a.name.split(".")[0] == "diffdebias")
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([child.module] if child.module else []))
                if base.split(".")[0] != "diffdebias":
                    continue
                for alias in child.names:  # `from pkg import module` imports the module
                    sub = f"{base}.{alias.name}"
                    out.append((sub if (ROOT.parent / Path(*sub.split("."))).with_suffix(".py").exists()
                                or (ROOT.parent / Path(*sub.split(".")) / "__init__.py").exists() else base, in_function))
            visit(child, nested)

    visit(tree, False)
    return out


def graph() -> dict[str, list[tuple[str, bool]]]:
    return {module_name(p): project_imports(p) for p in sorted(ROOT.rglob("*.py"))}


def layer_of(module: str) -> tuple[int, str] | None:
    """(layer index, the layer member it belongs to) of a module; None for the root package."""
    rest = module.split(".")[1:]
    if not rest:
        return None
    for i, members in enumerate(LAYERS):
        if rest[0] in members:
            return i, rest[0]
    raise AssertionError(f"module {module} is in no layer of tests/test_architecture.py: add it to LAYERS")


def test_every_import_goes_down_a_layer():
    bad = []
    for module, imports in graph().items():
        src = layer_of(module)
        for target, _ in imports:
            dst = layer_of(target)
            if src is None or dst is None or src[1] == dst[1]:
                continue
            if dst[0] < src[0] or (dst[0] == src[0] and src[0] != len(LAYERS) - 1):
                bad.append(f"{module} -> {target}")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_the_import_graph_has_no_cycle():
    edges = {m: {t for t, _ in imps if t != m} for m, imps in graph().items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_no_late_import_outside_the_cli():
    late = [f"{m} -> {t}" for m, imps in graph().items() for t, in_fn in imps if in_fn and m not in LAZY_IMPORTERS]
    assert not late, "function-level imports of project modules (move them to the top of the file):\n" + "\n".join(late)


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The checks can fail: a fake package with data -> engine (upwards) and a cycle."""
    pkg = tmp_path / "diffdebias"
    (pkg / "data").mkdir(parents=True)
    (pkg / "engine").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("from ..engine import loop\n")
    (pkg / "engine" / "__init__.py").write_text("")
    (pkg / "engine" / "loop.py").write_text("def f():\n    from ..data import base\n")
    (pkg / "data" / "base.py").write_text("from ..engine import loop\n")
    monkeypatch.setitem(globals(), "ROOT", pkg)
    imports = graph()
    assert ("diffdebias.engine.loop", False) in imports["diffdebias.data"]
    assert ("diffdebias.data.base", True) in imports["diffdebias.engine.loop"]
    for check in (test_every_import_goes_down_a_layer, test_the_import_graph_has_no_cycle, test_no_late_import_outside_the_cli):
        try:
            check()
        except AssertionError:
            continue
        raise AssertionError(f"{check.__name__} passed on a package that breaks it")
