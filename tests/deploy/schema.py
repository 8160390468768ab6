"""Leakage rows of two runs compared in schema: the same keys with the same value types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The raw JSON rows of ``run_dir/leakage.jsonl``."""
    lines = (run_dir / "leakage.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def schema(rows: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Per key, the JSON types its values take (``null`` is a NaN metric)."""
    types: dict[str, set[str]] = {}
    for row in rows:
        for key, value in row.items():
            types.setdefault(key, set()).add(type(value).__name__)
    return types


def assert_same_schema(run_dir: Path, reference: Path) -> list[dict[str, Any]]:
    """Assert both runs' rows have the same keys (in order) and types; return ``run_dir``'s."""
    rows, ref = read_rows(run_dir), read_rows(reference)
    assert rows and ref
    assert [list(r) for r in rows] == [list(ref[0])] * len(rows)
    assert schema(rows) == schema(ref)
    return rows


def row_keys(run_dir: Path) -> set[tuple[int, int, str, str]]:
    """(round, client partition, attack, status) of every row."""
    return {(r["round"], r["client"], r["attack"], r["status"]) for r in read_rows(run_dir)}
