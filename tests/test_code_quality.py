"""ruff and mypy stay clean: part of the suite so CI fails when they do not."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("attacks", "clients", "server", "simulator")


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed; install the test extras: pip install -e '.[test]'")
    return found


def test_ruff_is_clean() -> None:
    proc = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_mypy_is_clean() -> None:
    proc = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]


def _long_functions(path: Path, limit: int) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = (node.end_lineno or node.lineno) - node.body[0].lineno + 1
            if body > limit:
                yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({body} lines)"


def test_modules_and_functions_stay_short() -> None:
    """No module of the four packages over 400 lines; no function body (docstring included)
    over 60 lines outside benchmarks/."""
    modules = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    assert len(modules) > 50
    long_modules = [
        f"{p.relative_to(ROOT)} ({n} lines)"
        for p in modules
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400
    ]
    assert long_modules == []
    files = [*modules, *(ROOT / "tests").rglob("*.py")]
    assert [line for path in files for line in _long_functions(path, 60)] == []
