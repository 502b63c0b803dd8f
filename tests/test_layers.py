"""The house's layers: segan_lib's imports flow one way and form no cycle.

Layers, lowest first (a module may import its own package and any lower layer, nothing else):
    0 base        segan_lib itself, errors, paths, atomic, constants, config, run_files, _exports
    1 data, nets, metrics   (side by side: none imports another)
    2 training
    3 evaluation, apply     (side by side; apply never imports training, so applying a model needs no trainer)
    4 reporting             (reads saved results)
    5 study
    6 cli                   (nothing imports it)
Every import counts, also those inside functions: a lazy import is still a dependency.
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

import segan_lib

LIBRARY = Path(segan_lib.__file__).resolve().parent
BASE = {"", "errors", "paths", "atomic", "constants", "config", "run_files", "_exports"}
RANKS = {"data": 1, "nets": 1, "metrics": 1, "training": 2, "evaluation": 3, "apply": 3, "reporting": 4,
         "study": 5, "cli": 6}
FORBIDDEN = {("apply", "training")}  # allowed by rank, refused by design


def layer_of(module: str) -> str:
    """'segan_lib.data.cache' -> 'data'; base modules -> ''."""
    parts = module.split(".")[1:]
    top = parts[0] if parts else ""
    return "" if top in BASE else top


def rank(layer: str) -> int:
    return 0 if layer == "" else RANKS[layer]


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every segan_lib module the file imports, wherever the import statement stands."""
    package = root.name
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == package)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == package:
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{node.module}.{alias.name}"
                sub_path = root.parent.joinpath(*sub.split("."))
                found.add(sub if sub_path.with_suffix(".py").is_file() or sub_path.is_dir() else node.module)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    return {module_name(p, root): imported_modules(p, root) for p in sorted(root.rglob("*.py"))}


def layer_violations(root: Path) -> list[str]:
    problems = []
    for module, targets in import_graph(root).items():
        own = layer_of(module)
        for target in sorted(targets):
            other = layer_of(target)
            if other == own:
                continue
            if other == "cli":
                problems.append(f"{module} imports {target}: nothing may import the command line")
            elif rank(other) >= rank(own) or (own, other) in FORBIDDEN:
                problems.append(f"{module} (layer {own or 'base'}) imports {target} (layer {other or 'base'})")
    return problems


def import_cycles(root: Path) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), packages' __init__ left out
    (a package's lazy __init__ names its modules without importing them)."""
    graph = import_graph(root)
    packages = {module_name(p, root) for p in root.rglob("__init__.py")}
    graph = {m: {t for t in ts if t in graph and t not in packages and t != m}
             for m, ts in graph.items() if m not in packages}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_every_module_belongs_to_a_known_layer():
    unknown = sorted({layer_of(m) for m in import_graph(LIBRARY)} - set(RANKS) - {""})
    assert not unknown, f"modules outside the known layers: {unknown}; add them to RANKS in this test"


def test_imports_flow_one_way():
    assert layer_violations(LIBRARY) == []


def test_no_import_cycles():
    assert import_cycles(LIBRARY) == []


@pytest.mark.parametrize("module, statement, expected", [
    ("data/cache.py", "from segan_lib.training.trainer import train", "layer data) imports segan_lib.training"),
    ("apply/bundle.py", "from segan_lib.training import segan", "layer apply) imports segan_lib.training.segan"),
    ("nets/losses.py", "from segan_lib.data import pipeline", "layer nets) imports segan_lib.data.pipeline"),
    ("study/runner.py", "    from segan_lib import cli", "nothing may import the command line"),
])
def test_the_check_fails_on_an_upward_import_added_by_hand(tmp_path, module, statement, expected):
    copy = tmp_path / "segan_lib"
    shutil.copytree(LIBRARY, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    text = target.read_text()
    if statement.startswith(" "):  # a function-local import counts too
        text += f"\n\ndef _added_by_hand():\n{statement}\n"
    else:
        text = f"{statement}\n{text}"
    target.write_text(text)
    assert any(expected in p for p in layer_violations(copy)), layer_violations(copy)


def test_the_check_finds_a_cycle_added_by_hand(tmp_path):
    copy = tmp_path / "segan_lib"
    shutil.copytree(LIBRARY, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "paths.py").write_text((copy / "paths.py").read_text() + "\n\ndef _x():\n    from segan_lib import config\n")
    assert ["segan_lib.config", "segan_lib.paths"] in import_cycles(copy)


def test_importing_the_library_and_the_command_line_loads_no_framework():
    import subprocess
    import sys

    code = ("import sys, segan_lib, segan_lib.cli, segan_lib.data, segan_lib.nets, segan_lib.training, "
            "segan_lib.evaluation, segan_lib.apply, segan_lib.reporting, segan_lib.study; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_subpackage_lists_its_public_names():
    import importlib

    for package in RANKS:
        if package == "cli":
            continue
        mod = importlib.import_module(f"segan_lib.{package}")
        assert mod.__all__, package
        missing = [n for n in mod.__all__ if n not in dir(mod)]
        assert not missing, f"segan_lib.{package}: {missing}"
