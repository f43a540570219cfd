"""The layout keeps its promises: no import cycles, argparse only in the CLIs, pure layers pure.

The layer order itself is checked by import-linter (`lint-imports`, pyproject.toml).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "tumbler"

# Pure: no sockets, subprocesses or clock reads; time comes in as an argument.
PURE = ("protocols", "decisions")
# Time comes in as an argument here too: the acting half (firewall backends, door commands,
# the daemon's dispatcher) is told when it is, by the daemon's loop or the CLI.
CLOCK_FREE = (*PURE, "actions", "daemon/dispatch.py")
# The replay stores keep their claims somewhere (SQLite, Redis): storage is their job.
STORES = ("decisions/replay/local.py", "decisions/replay/redis.py")
IO_MODULES = {"socket", "subprocess", "asyncio", "selectors", "select", "ssl", "urllib.request"}
CLOCK_CALLS = {
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "monotonic"),
    ("time", "monotonic_ns"),
    ("time", "perf_counter"),
    ("time", "localtime"),
    ("time", "gmtime"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
}


def modules(*under: str) -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if not under or rel.startswith(under):
            yield rel, ast.parse(path.read_text(), filename=rel)


def imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def clock_reads(tree: ast.Module) -> list[str]:
    """Calls such as time.time() or datetime.now(); gmtime(x) of a given time is no read."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
        if (owner_name, node.func.attr) not in CLOCK_CALLS:
            continue
        if node.func.attr in ("gmtime", "localtime") and node.args:
            continue
        found.append(f"{owner_name}.{node.func.attr}() on line {node.lineno}")
    return found


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("tumbler")
    cycles = []
    for module in sorted(graph.modules):
        for other in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=other, imported=module)
            if back is not None:
                cycles.append(" -> ".join((module, *back)))
    assert cycles == []


def test_argparse_only_in_cli() -> None:
    users = [rel for rel, tree in modules() if "argparse" in imported(tree)]
    assert users, "the CLIs use argparse, so the check must find them"
    assert [rel for rel in users if not rel.startswith("cli/")] == []


@pytest.mark.parametrize("layer", PURE)
def test_pure_layers_do_no_io(layer: str) -> None:
    checked = list(modules(layer))
    assert checked
    offenders = {
        rel: sorted(imported(tree) & IO_MODULES)
        for rel, tree in checked
        if imported(tree) & IO_MODULES and rel not in STORES
    }
    assert offenders == {}


@pytest.mark.parametrize("layer", CLOCK_FREE)
def test_clock_free_layers_read_no_clock(layer: str) -> None:
    checked = list(modules(layer))
    assert checked
    offenders = {rel: clock_reads(tree) for rel, tree in checked if rel not in STORES}
    assert {rel: reads for rel, reads in offenders.items() if reads} == {}


def test_the_checks_see_what_they_look_for() -> None:
    """The detectors themselves: a clock read and an I/O import are found, a conversion not."""
    tree = ast.parse(
        "import socket\nimport time\nfrom datetime import datetime\n"
        "a = time.time()\nb = datetime.now()\nc = time.gmtime(0)\n"
    )
    assert imported(tree) & IO_MODULES == {"socket"}
    assert clock_reads(tree) == ["time.time() on line 4", "datetime.now() on line 5"]


def test_one_lab_makes_and_removes_network_namespaces() -> None:
    """The demo, the tests and the bench share tumbler.lab's namespaces and their clean-up."""
    root = SRC.parents[1]
    made_here = re.compile(r"""["']netns["'],\s*["'](add|del|delete)["']|ip netns (add|del)""")
    lab = SRC / "lab" / "netns.py"
    assert made_here.search(lab.read_text())  # the check sees what it looks for
    elsewhere = [
        path.relative_to(root).as_posix()
        for folder in ("src", "tests", "bench")
        for path in sorted((root / folder).rglob("*.py"))
        if path not in (lab, Path(__file__).resolve()) and made_here.search(path.read_text())
    ]
    assert elsewhere == []
