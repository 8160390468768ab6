"""``report.html``: one self-contained page per run, readable from disk without a network.

Every image is embedded as a base64 ``data:`` URI, the CSS is inline, and there are no
external fonts, scripts or links. All text from the run (config values, attack names,
failure reasons) is HTML-escaped. A tiny inline script records on ``load`` how many images
decoded (``<body data-images-loaded data-images-total>``), so a headless browser's dumped
DOM shows whether the page rendered.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedleak.simulator.report.build import ReportNotes
from fedleak.simulator.report.findings import client_leakage
from fedleak.simulator.report.html_parts import cell, esc, figure, table, tree
from fedleak.simulator.report.html_threat import active_defenses, threat_model
from fedleak.simulator.report.plots import (
    ACCURACY_PLOT,
    EXACT_PSNR_DB,
    LEAKAGE_METRICS,
    LEARNING_PLOT,
    write_plots,
)
from fedleak.simulator.report.run_facts import run_facts
from fedleak.simulator.runtime.results import (
    STATUS_OK,
    STATUS_TITLES,
    LeakageRecord,
    RunPaths,
    read_jsonl_rows,
    read_run_config,
)

__all__ = ["SECTIONS", "active_defenses", "read_config", "render_html", "write_html_report"]

read_config = read_run_config

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0 auto;max-width:1150px;padding:1em 1.5em;color:#1b1f24;background:#fff}
h1{font-size:1.5em;margin-bottom:.2em}h2{border-bottom:2px solid #d0d7de;padding-bottom:.2em;
margin-top:1.8em}h3{font-size:1.05em;margin:1.2em 0 .4em}
table{border-collapse:collapse;font-size:.85em;margin:.4em 0}table table{font-size:1em}
th,td{border:1px solid #d0d7de;padding:.25em .55em;text-align:right;vertical-align:top}
th{background:#f3f5f7}td.text,th.text{text-align:left}
table.tree td,table.tree th{text-align:left}table.tree th{font-weight:600;white-space:nowrap}
.muted{color:#656d76}img{max-width:100%;height:auto;border:1px solid #eaeef2}
figure{margin:.6em 0 1.2em}figcaption{font-size:.85em;color:#656d76}
.plots{display:flex;flex-wrap:wrap;gap:1em}.plots figure{flex:1 1 480px}
nav a{margin-right:1em}code,pre{font-family:ui-monospace,Menlo,Consolas,monospace}
pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.8em}
.scroll{overflow-x:auto}.alert{border-left:4px solid #cf222e;background:#fff5f5;padding:.4em .8em}
.warn{border-left:4px solid #bf8700;background:#fff8e5;padding:.4em .8em}
.warn li,.alert li{margin:.2em 0}td.heat{font-variant-numeric:tabular-nums}
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.dataset.imagesTotal = String(images.length);
  document.body.dataset.imagesLoaded = String(loaded.length);
  document.body.dataset.reportReady = "1";
});
"""

SECTIONS = (
    ("summary", "Summary"),
    ("clients", "Leakage per client"),
    ("learning", "Leakage as the model learns"),
    ("leakage", "Leakage per round"),
    ("accuracy", "Accuracy"),
    ("gallery", "Truth vs reconstruction"),
    ("threat-model", "Threat model"),
    ("config", "Resolved config"),
)


def _privacy(paths: RunPaths) -> dict[str, Any] | None:
    try:
        loaded = json.loads(paths.privacy.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _notes(notes: ReportNotes) -> str:
    parts = []
    if notes.leaks:
        items = "".join(f"<li>{esc(line)}</li>" for line in notes.leaks)
        parts.append(f'<div class="alert" id="defended-leaks"><ul>{items}</ul></div>')
    if notes.warnings:
        items = "".join(f"<li>{esc(line)}</li>" for line in notes.warnings)
        parts.append(f'<h3>Warnings</h3><div class="warn" id="warnings"><ul>{items}</ul></div>')
    lines = [line for line in (notes.privacy, notes.lpips) if line]
    parts.extend(f'<p class="muted">{esc(line)}</p>' for line in lines)
    return "".join(parts)


def _summary(
    paths: RunPaths,
    config: Mapping[str, Any],
    records: list[LeakageRecord],
    summary_rows: list[dict[str, Any]],
    notes: ReportNotes,
) -> str:
    training_rows = read_jsonl_rows(paths.training_jsonl)
    facts = run_facts(config, records, training_rows, _privacy(paths))
    head = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    parts = [
        f'<table class="tree" id="facts">{head}</table>',
        _notes(notes),
        "<h3>Per round and attack (mean over successful attacks)</h3>",
    ]
    if summary_rows:
        columns = list(summary_rows[0])
        titles = [STATUS_TITLES.get(c, c) for c in columns]
        cells = ([row[c] for c in columns] for row in summary_rows)
        parts.append('<div class="scroll">' + table(titles, cells, 2) + "</div>")
    else:
        parts.append('<p class="muted">no leakage rows recorded</p>')
    problems = Counter(
        (r.attack, r.status, r.reason[:300]) for r in records if r.status != STATUS_OK
    )
    if problems:
        parts.append("<h3>Rows without a reconstruction</h3>")
        rows = [(a, s, reason or "-", n) for (a, s, reason), n in sorted(problems.items())]
        parts.append(table(["attack", "status", "reason", "rows"], rows, text_cols=3))
    return "".join(parts)


def _heat(psnr: float, attack: str) -> str:
    """A PSNR cell shaded by how close it is to exact recovery."""
    share = max(0.0, min(psnr, EXACT_PSNR_DB)) / EXACT_PSNR_DB
    style = f"background:rgba(207,34,46,{0.6 * share:.2f})"
    return f'<td class="heat" style="{style}" title="{esc(attack)}">{cell(psnr)}</td>'


def _clients(records: list[LeakageRecord]) -> str:
    rounds, clients = client_leakage(records)
    if not clients:
        return '<p class="muted">no successful, measured attack</p>'
    head = "".join(
        f"<th>{esc(c)}</th>"
        for c in ["client", *(f"round {r}" for r in rounds), "peak PSNR", "peak round", "by"]
    )
    body = []
    for client in clients:
        cells = [f'<td class="text">{esc(client.owner)}</td>']
        for server_round in rounds:
            value = client.by_round.get(server_round)
            cells.append(_heat(*value) if value else "<td>-</td>")
        cells.append(f"<td>{cell(client.peak_psnr)}</td><td>{client.peak_round}</td>")
        cells.append(f'<td class="text">{esc(client.peak_attack)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        "<p>Best PSNR [dB] over the attacks of each client's update, per round; the client "
        f"that leaks most comes first. Shading saturates at {EXACT_PSNR_DB:g} dB "
        "(exact recovery).</p>"
        f'<div class="scroll"><table id="client-leakage"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _plots_section(plots: Mapping[str, Path], keys: list[tuple[str, str]], empty: str) -> str:
    figures = [figure(plots[k], title) for k, title in keys if k in plots]
    if not figures:
        return f'<p class="muted">{esc(empty)}</p>'
    return '<div class="plots">' + "".join(figures) + "</div>"


_MODALITY_CAPTIONS = (
    ("discrete_accuracy", "discrete accuracy {:.3f}"),
    ("continuous_mae", "continuous MAE {:.3g}"),
    ("pearson_mean", "Pearson {:.4f}"),
)


def _modality_caption(records: list[LeakageRecord], server_round: int, attack: str) -> str:
    """``, discrete accuracy 1.000, ...``: the modality's own metrics a round's rows have."""
    rows = [r for r in records if (r.round, r.attack, r.status) == (server_round, attack, "ok")]
    parts = []
    for name, text in _MODALITY_CAPTIONS:
        values = [getattr(r, name) for r in rows if not math.isnan(getattr(r, name))]
        if values:
            parts.append(text.format(sum(values) / len(values)))
    return "".join(f", {part}" for part in parts)


def _gallery(paths: RunPaths, records: list[LeakageRecord]) -> str:
    rounds = sorted({r.round for r in records})
    if not rounds:
        return '<p class="muted">no rounds attacked</p>'
    parts = []
    for server_round in rounds:
        grid = paths.grids / f"round_{server_round:04d}.png"
        psnr: dict[str, list[float]] = defaultdict(list)
        for r in records:
            if r.round == server_round and r.status == STATUS_OK and not math.isnan(r.psnr_mean):
                psnr[r.attack].append(r.psnr_mean)
        caption = "; ".join(
            f"{a}: mean PSNR {sum(v) / len(v):.1f} dB{_modality_caption(records, server_round, a)}"
            for a, v in sorted(psnr.items())
        )
        parts.append(f"<h3>Round {server_round}</h3>")
        if grid.is_file():
            parts.append(figure(grid, f"round {server_round}: truth vs reconstruction", caption))
        else:
            parts.append(
                '<p class="muted">no image grid: no audited, successful reconstruction</p>'
            )
    return "".join(parts)


def _config_section(config: Mapping[str, Any], paths: RunPaths) -> str:
    text = paths.config.read_text(encoding="utf-8") if paths.config.is_file() else ""
    return (
        tree(config) if config else '<p class="muted">config.yaml missing</p>'
    ) + f"<details><summary>config.yaml</summary><pre>{esc(text)}</pre></details>"


def render_html(
    paths: RunPaths,
    records: list[LeakageRecord],
    summary_rows: list[dict[str, Any]],
    plots: Mapping[str, Path],
    notes: ReportNotes | None = None,
) -> str:
    """The whole report page as one HTML string (see the module docstring)."""
    config = read_run_config(paths)
    leakage_keys = [(m.key, m.title) for m in LEAKAGE_METRICS]
    learning = [(LEARNING_PLOT, "Leakage and test accuracy on one round axis, per attack")]
    bodies = {
        "summary": _summary(paths, config, records, summary_rows, notes or ReportNotes()),
        "clients": _clients(records),
        "learning": _plots_section(plots, learning, "no leakage or no accuracy to draw"),
        "leakage": _plots_section(plots, leakage_keys, "no successful attack to plot"),
        "accuracy": _plots_section(
            plots, [(ACCURACY_PLOT, "Accuracy and loss per round")], "no accuracy recorded"
        ),
        "gallery": _gallery(paths, records),
        "threat-model": threat_model(config, paths),
        "config": _config_section(config, paths),
    }
    nav = "".join(f'<a href="#{key}">{esc(title)}</a>' for key, title in SECTIONS)
    sections = "".join(
        f'<section id="{key}"><h2>{esc(title)}</h2>{bodies[key]}</section>'
        for key, title in SECTIONS
    )
    name = config.get("name", "run")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>fedleak report: {esc(name)}</title><style>{_CSS}</style></head>"
        f"<body><h1>fedleak report: {esc(name)}</h1>"
        f'<p class="muted">run directory <code>{esc(paths.root)}</code></p>'
        f"<nav>{nav}</nav>{sections}<script>{_SCRIPT}</script></body></html>\n"
    )


def write_html_report(
    paths: RunPaths,
    records: list[LeakageRecord],
    summary_rows: list[dict[str, Any]],
    notes: ReportNotes | None = None,
) -> Path:
    """Write the run's PNG plots, then ``report.html`` (atomically) from them.

    Parameters
    ----------
    paths : RunPaths
        The run directory; its grids (``grids/``) should already be written.
    records : list of LeakageRecord
        The run's leakage rows.
    summary_rows : list of dict
        Per-(round, attack) rows of :func:`fedleak.simulator.report.build.summarise`.
    notes : ReportNotes, optional
        Lines shown under the summary box (warnings, defended leaks, LPIPS, budget).

    Returns
    -------
    Path
        ``paths.report_html``.
    """
    plots = write_plots(paths, records, read_jsonl_rows(paths.training_jsonl))
    page = render_html(paths, records, summary_rows, plots, notes)
    partial = paths.report_html.with_suffix(".html.partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(paths.report_html)
    return paths.report_html
