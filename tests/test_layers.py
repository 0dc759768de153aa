"""The layer rules hold: the import-linter contracts of pyproject.toml pass, and no module import cycle exists.

`lint-imports` (deploy/lint.sh) checks the same contracts before a full run; these tests keep the rules in the quick
tier and also forbid cycles, which import-linter's contracts do not cover (a lazy import hides one from a reader,
not from the graph).
"""

from __future__ import annotations

import os
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "mes_contracts",
    "cloud_api",
    "edge_gateway",
    "mes_labels",
    "mes_cli",
    "line_simulator",
    "printer_emulator",
    "db",
    "deploy",
)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)  # lazy and TYPE_CHECKING imports count too


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_the_import_contracts_of_pyproject_hold() -> None:
    cwd = os.getcwd()
    os.chdir(ROOT)  # lint-imports reads ./pyproject.toml
    try:
        assert lint_imports(no_cache=True, no_logo=True) == 0, "run .venv/bin/lint-imports for the broken contract"
    finally:
        os.chdir(cwd)


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_one() -> None:
    fake = grimp.ImportGraph()
    for importer, imported in (("a.x", "a.y"), ("a.y", "a.z"), ("a.z", "a.x"), ("a.z", "a.w")):
        fake.add_import(importer=importer, imported=imported)
    assert _cycles(fake) == [["a.x", "a.y", "a.z"]]


def test_the_app_does_not_import_the_route_table_tool(graph: grimp.ImportGraph) -> None:
    assert graph.find_shortest_chain(importer="cloud_api.http.app", imported="cloud_api.http.route_table") is None
    assert graph.find_shortest_chain(importer="cloud_api.bootstrap", imported="cloud_api.http.route_table") is None


def test_use_cases_never_import_the_crash_hooks(graph: grimp.ImportGraph) -> None:
    assert (
        graph.find_shortest_chain(importer="cloud_api.services", imported="cloud_api.ingestor.faults", as_packages=True)
        is None
    )
