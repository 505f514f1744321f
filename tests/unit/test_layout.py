"""The house's layers (README "Layout"): imports go downward only, and no cycle exists.

Every import of a ``pipeline`` module counts, wherever it is written: at the top, inside a
function or under ``TYPE_CHECKING``. A cycle hidden in a function still couples the two
modules both ways, and a type-only one still means neither can be read alone.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PIPELINE = Path(__file__).resolve().parents[2] / "pipeline"

# The layers, bottom to top. A module may import its own package and anything ranked lower;
# the packages of one layer do not import each other, while the single modules of the base
# and of the entry points may (the cycle check keeps those acyclic).
RANKS = {
    "pipeline.config": 0,
    "pipeline.months": 0,
    "pipeline.storage": 0,
    "pipeline.files": 0,
    "pipeline.faults": 0,
    "pipeline.sql": 0,
    "pipeline.schema": 0,
    "pipeline.errors": 0,
    "pipeline.pg": 0,
    "pipeline.sources": 1,
    "pipeline.warehouse": 1,
    "pipeline.lake": 2,
    "pipeline.compute": 3,
    "pipeline.gates": 3,
    "pipeline.deliver": 4,
    "pipeline.run": 5,
    "pipeline.cli": 6,
    "pipeline.cli_errors": 6,
    "pipeline.cli_output": 6,
    "pipeline.demo": 6,
    "pipeline.__main__": 6,
}
MODULE_LAYERS = {0, 6}  # layers made of single modules
MAX_LINES = 420  # "no module over about 400 lines"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PIPELINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PIPELINE.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """The pipeline modules ``name`` imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pipeline")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            if not base.startswith("pipeline"):
                continue
            for alias in node.names:  # `from pipeline import lake` names a module
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m != name and m != "pipeline"}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _area(module: str) -> str:
    """The ranked package or module that ``module`` belongs to."""
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in RANKS:
            return ".".join(parts[:n])
    raise AssertionError(f"{module} is in no layer: add it to RANKS (and to the README)")


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        if name != "pipeline":
            _area(name)


def test_no_import_cycle() -> None:
    try:
        graphlib.TopologicalSorter(GRAPH).prepare()
    except graphlib.CycleError as cycle:
        pytest.fail(f"import cycle: {' -> '.join(cycle.args[1])}")


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n != "pipeline"))
def test_imports_go_downward(name: str) -> None:
    mine = _area(name)
    upward = [
        m
        for m in sorted(GRAPH[name])
        if _area(m) != mine
        and RANKS[_area(m)] >= RANKS[mine]
        and not (RANKS[_area(m)] == RANKS[mine] in MODULE_LAYERS)
    ]
    assert not upward, f"{name} ({mine}, layer {RANKS[mine]}) imports {upward}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines; cut it where it has two jobs"


def test_the_checker_sees_imports_in_functions_and_type_checking(tmp_path) -> None:
    """The check itself: imports written inside a function or under TYPE_CHECKING count,
    and a cycle made of them is found."""
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pipeline.gates.results import GateReport\n"
        "def f():\n    from pipeline import months\n    import pipeline.sql\n"
    )
    assert _imports("pipeline.m", module) == {
        "pipeline.gates.results",
        "pipeline.months",
        "pipeline.sql",
    }
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).prepare()
