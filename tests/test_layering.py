"""One import root, and every import pointing one way (docs/architecture.md, "Layers").

Packages: ``fedleak.attacks`` <- ``fedleak.simulator`` <- ``fedleak.clients``, ``fedleak.server``.
``attacks`` imports nothing else of fedleak's (nor Flower, nor Ray); ``simulator`` imports
neither ``clients`` nor ``server``; ``clients`` and ``server`` do not import each other (Flower
joins them through the component strings in ``pyproject.toml``).

Inside ``fedleak.simulator``, bottom to top; a unit imports only units of lower layers, never
one beside it or above it:

0. the modules directly in ``simulator/`` that every layer may use: ``errors``, ``exit_codes``,
   ``record_keys``, ``plugins``, ``defenses``, ``torchvision_compat`` (and the package itself);
1. ``data``, ``models``;
2. ``config`` (on data and models: its accepted values come from their registries), ``metrics``;
3. ``runtime``: what runs an experiment and what a run writes;
4. ``report``, ``sweep``, ``deploy``;
5. ``cli``: the ``fedleak`` command line (``cli`` and ``catalog``, what ``fedleak list`` prints).

One import root: product code, tests, benchmarks and examples import fedleak's code as
``fedleak.*`` only. In a checkout the repository root is on ``sys.path`` too, so ``import
simulator`` would load a second copy of every module (two registries, two classes of each name).
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("attacks", "clients", "server", "simulator")
FORBIDDEN = {
    "attacks": {"fedleak.simulator", "fedleak.clients", "fedleak.server", "flwr", "ray"},
    "simulator": {"fedleak.clients", "fedleak.server"},
    "clients": {"fedleak.server"},
    "server": {"fedleak.clients"},
}
FOUNDATION = ("errors", "exit_codes", "record_keys", "plugins", "defenses", "torchvision_compat")
COMMAND_LINE = ("cli", "catalog")
LAYERS: tuple[tuple[str, ...], ...] = (
    ("foundation",),
    ("data", "models"),
    ("config", "metrics"),
    ("runtime",),
    ("report", "sweep", "deploy"),
    ("cli",),
)
LAYER_OF = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
MAX_TOP_MODULES = 12
CHECKED_FOLDERS = (*PACKAGES, "fedleak", "tests", "benchmarks", "examples")


def _module_name(path: Path) -> str:
    """``simulator/config/schema.py`` -> ``fedleak.simulator.config.schema``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["fedleak", *parts])


def _product_files() -> dict[str, Path]:
    files = {
        _module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }
    assert len(files) > 50, "the packages were not found"
    return files


def _imports(path: Path, module: str) -> Iterator[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import, nested ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, [alias.name for alias in node.names]


def _targets(path: Path, module: str, known: set[str]) -> set[str]:
    """fedleak modules ``path`` imports: ``from fedleak.simulator import exit_codes`` counts
    as importing ``fedleak.simulator.exit_codes``."""
    found: set[str] = set()
    for base, names in _imports(path, module):
        submodules = {f"{base}.{name}" for name in names} & known
        found |= submodules or {base}
    return {m for m in found if m == "fedleak" or m.startswith("fedleak.")}


def _unit(module: str) -> str | None:
    """The layering unit of a ``fedleak.simulator`` module: its subpackage or role."""
    parts = module.split(".")
    if parts[:2] != ["fedleak", "simulator"]:
        return None
    if len(parts) == 2 or parts[2] in FOUNDATION:
        return "foundation"
    return "cli" if parts[2] in COMMAND_LINE else parts[2]


def _graph() -> dict[str, set[str]]:
    """Unit -> units it imports: simulator's units, plus attacks, clients and server whole."""
    files = _product_files()
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        source = _unit(module) or module.split(".")[1]
        for target in _targets(path, module, known):
            if target == "fedleak":
                continue
            dest = _unit(target) or target.split(".")[1]
            if dest != source:
                graph.setdefault(source, set()).add(dest)
    return graph


def _python_files() -> Iterator[Path]:
    for folder in CHECKED_FOLDERS:
        base = ROOT / folder
        if folder == "fedleak":  # the links lead to the packages, checked under their own names
            yield base / "__init__.py"
            continue
        yield from (p for p in base.rglob("*.py") if ".venv" not in p.parts)


def _old_root(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


OLD_DOTTED = re.compile(rf"^(?:{'|'.join(PACKAGES)})\.[A-Za-z_][\w.]*(?::[\w.]+)?$")


def test_nothing_imports_the_old_roots() -> None:
    offenders: dict[str, list[str]] = {}
    for path in _python_files():
        module = _module_name(path) if path.parts[len(ROOT.parts)] in PACKAGES else "tests.x"
        bad = sorted({base for base, _ in _imports(path, module) if _old_root(base)})
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}, "import these as fedleak.<package>: " + str(offenders)


def test_no_string_names_an_old_module() -> None:
    """``-m simulator.cli``, ``monkeypatch.setattr("server.app.X", ...)``, ``"clients.app:app"``."""
    # a bare package name followed by a word is often not code ("server.crt")
    modules = {name.removeprefix("fedleak.") for name in _product_files()} - set(PACKAGES)
    offenders: dict[str, list[str]] = {}
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            if OLD_DOTTED.match(node.value) and any(
                node.value.split(":")[0] == m or node.value.startswith(m + ".") for m in modules
            ):
                offenders.setdefault(str(path.relative_to(ROOT)), []).append(node.value)
    assert offenders == {}


def test_pyproject_names_fedleak_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    components = project["tool"]["flwr"]["app"]["components"]
    entry_points = [*components.values(), *project["project"]["scripts"].values()]
    assert entry_points and all(e.startswith("fedleak.") for e in entry_points), entry_points
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["fedleak*"]
    assert project["tool"]["mypy"]["packages"] == ["fedleak"]


@pytest.mark.parametrize("package", PACKAGES)
def test_fedleak_links_to_each_top_level_folder(package: str) -> None:
    link = ROOT / "fedleak" / package
    assert link.is_symlink() and link.readlink() == Path("..") / package
    assert link.resolve() == (ROOT / package).resolve()


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_one_way(package: str) -> None:
    files = _product_files()
    offenders: dict[str, list[str]] = {}
    for module, path in files.items():
        if module.split(".")[1] != package:
            continue
        imported = {base for base, _ in _imports(path, module)}
        bad = sorted(
            m for m in imported for f in FORBIDDEN[package] if m == f or m.startswith(f + ".")
        )
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}


def test_every_simulator_module_has_a_layer() -> None:
    units = {_unit(m) for m in _product_files()} - {None}
    assert units == set(LAYER_OF), "put new subpackages or top-level modules in LAYERS"


def test_simulator_layers_point_down() -> None:
    files = _product_files()
    known = set(files)
    offenders: list[str] = []
    for module, path in files.items():
        source = _unit(module)
        if source is None:
            continue
        for target in _targets(path, module, known):
            dest = _unit(target)
            if dest is not None and dest != source and LAYER_OF[dest] >= LAYER_OF[source]:
                offenders.append(f"{module} ({source}) imports {target} ({dest})")
    assert offenders == []


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path, or None (depth-first search, three colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_between_packages_and_subpackages() -> None:
    graph = _graph()
    assert {"clients", "server", "config", "runtime", "cli"} <= set(graph)  # the graph is real
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_simulator_has_few_top_level_modules_and_plain_subpackages() -> None:
    simulator = ROOT / "simulator"
    top = sorted(p.name for p in simulator.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top
    for folder in sorted(p for p in simulator.iterdir() if p.is_dir() and p.name in LAYER_OF):
        init = folder / "__init__.py"
        tree = ast.parse(init.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{init.relative_to(ROOT)}: say what the subpackage is for"
        # a docstring only: each name is imported from the module that defines it
        assert len(tree.body) == 1, f"{init.relative_to(ROOT)} re-exports"
