"""The house rules of docs/architecture.md, checked on the source's own imports: every import statement
counts, at the top of a module, inside a function or under `TYPE_CHECKING`.

- The base (`pioneer_base`) imports no room and not the composition root.
- A room imports the base and only the rooms `ROOMS` lets it; no room imports the composition root
  (`pioneer_telemetry`: the CLI and the local stack), which may import everything.
- No modules import each other in a circle, within a room or across rooms.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = "pioneer_base"
COMPOSITION_ROOT = "pioneer_telemetry"
ROOMS = {  # each room, in data-flow order, and the rooms it may import besides the base
    "simulator": {"collector", "streams"},  # writes pod logs, or lines to Kafka through the collector's sink
    "collector": {"streams"},  # the edge filters and frames lines as the worker parses them; topics
    "streams": set(),
    "dashboard": set(),  # reads the worker over HTTP only
}
PACKAGES = {BASE, COMPOSITION_ROOT, *ROOMS}


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of our packages under `root`."""
    found = {}
    for package in sorted(PACKAGES):
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported(name: str, path: Path, node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    module = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        module = ".".join([*package, module] if module else package)
    # `from dashboard import ui` imports the module dashboard.ui; `from streams.api import X`, streams.api
    return [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module for alias in node.names]


def _module_of(imported: str, known: set[str]) -> str:
    """The module an imported name lives in: itself, or for an attribute (or a missing module) its parent."""
    while imported not in known and "." in imported:
        imported = imported.rsplit(".", 1)[0]
    return imported


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of our packages it imports (a package stands for its `__init__`)."""
    files = module_files(root)
    known = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for imported in _imported(name, path, node, known):
                target = _module_of(imported, known)
                if target.split(".")[0] in PACKAGES and target != name:
                    targets.add(target)
    return graph


def door_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports through a door that does not open that way."""
    problems = []
    for name, targets in sorted(graph.items()):
        home = name.split(".")[0]
        allowed = {home, BASE} | ROOMS.get(home, set())
        if home == COMPOSITION_ROOT:
            continue  # it wires everything
        for target in sorted(targets):
            there = target.split(".")[0]
            if there not in allowed:
                what = "the base" if home == BASE else f"room {home}"
                kind = "the composition root" if there == COMPOSITION_ROOT else f"{there}"
                problems.append(f"{what}: {name} imports {target} ({kind})")
    return problems


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other in a circle (strongly connected components, Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


# -- the rules, on this tree -------------------------------------------------------------------------


def test_every_package_has_a_place() -> None:
    """A new top-level package must be given its place here (and in docs/architecture.md)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert set(pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]) == PACKAGES


def test_the_rooms_form_no_circle() -> None:
    assert circles({room: set(doors) for room, doors in ROOMS.items()}) == []


def test_imports_go_through_open_doors_only() -> None:
    assert door_violations(import_graph(ROOT)) == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    assert circles(import_graph(ROOT)) == []


# -- the checks catch what they are for ------------------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for package in PACKAGES:
        (root / package).mkdir()
        (root / package / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_the_checks_catch_violations(tmp_path: Path) -> None:
    graph = import_graph(
        _tree(
            tmp_path,
            {
                "pioneer_base/config.py": "def f():\n    from streams.topics import TopicSettings\n",
                "streams/topics.py": "from pioneer_base.config import X\n",
                "streams/api.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from streams.worker import Pipeline\n",
                "streams/worker.py": "def create_app():\n    from . import api\n",
                "dashboard/ui.py": "import pioneer_telemetry.cli\n",
                "dashboard/charts.py": "from dashboard import ui\n",
                "collector/cli.py": "from simulator import simulate\n",
                "simulator/simulate.py": "from collector.cli import x\nfrom streams import topics\n",
                "pioneer_telemetry/cli.py": "import collector.cli, simulator.simulate\n",
            },
        )
    )
    assert graph["dashboard.charts"] == {"dashboard.ui"}
    assert graph["streams.worker"] == {"streams.api"}
    assert door_violations(graph) == [
        "room collector: collector.cli imports simulator.simulate (simulator)",
        "room dashboard: dashboard.ui imports pioneer_telemetry.cli (the composition root)",
        "the base: pioneer_base.config imports streams.topics (streams)",
    ]
    assert sorted(circles(graph)) == [
        ["collector.cli", "simulator.simulate"],
        ["pioneer_base.config", "streams.topics"],
        ["streams.api", "streams.worker"],
    ]
