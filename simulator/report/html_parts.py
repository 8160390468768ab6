"""Small HTML builders of the run report: escaped text, tables, trees and embedded PNGs."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def esc(value: object) -> str:
    """``str(value)`` escaped for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def cell(value: object) -> str:
    """A table cell: floats to 3 significant digits (``-`` for NaN), text escaped."""
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return esc(value)


def data_uri(png: Path) -> str:
    """The PNG file as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def figure(png: Path, alt: str, caption: str = "") -> str:
    """An embedded PNG with its caption."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{data_uri(png)}" alt="{esc(alt)}">{cap}</figure>'


def table(columns: list[str], rows: Iterable[Iterable[object]], text_cols: int = 0) -> str:
    """A table; the first ``text_cols`` columns are left-aligned text."""

    def cls(i: int) -> str:
        return ' class="text"' if i < text_cols else ""

    head = "".join(f"<th{cls(i)}>{esc(c)}</th>" for i, c in enumerate(columns))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{cell(v)}</td>" for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def tree(value: Any) -> str:
    """A YAML/JSON tree as nested key/value tables; lists of scalars inline."""
    if isinstance(value, Mapping):
        if not value:
            return '<span class="muted">{}</span>'
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{tree(v)}</td></tr>" for k, v in value.items())
        return f'<table class="tree">{rows}</table>'
    if isinstance(value, list):
        if all(not isinstance(v, Mapping | list) for v in value):
            return "<code>[" + ", ".join(esc(scalar(v)) for v in value) + "]</code>"
        return "<ol>" + "".join(f"<li>{tree(v)}</li>" for v in value) + "</ol>"
    return f"<code>{esc(scalar(value))}</code>"


def scalar(value: object) -> str:
    """A YAML scalar as YAML writes it (``null``, ``true``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
