"""``report.html``: one self-contained page per run, readable from disk without a network.

Every image is embedded as a base64 ``data:`` URI, the CSS is inline, and there are no
external fonts, scripts or links. All text from the run (config values, attack names,
failure reasons) is HTML-escaped. A tiny inline script records on ``load`` how many images
decoded (``<body data-images-loaded data-images-total>``), so a headless browser's dumped
DOM shows whether the page rendered.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from simulator.plots import ACCURACY_PLOT, LEAKAGE_METRICS, write_plots
from simulator.results import STATUS_OK, LeakageRecord, RunPaths, read_jsonl_rows

SERVER_KNOWLEDGE = (
    "the global model it sends each round",
    "each client's reply: its updated weights, hence the update",
    "the training hyperparameters it configured",
    "the num-examples each client reports",
)
HYPERPARAMETER_KEYS = ("mode", "lr", "batch_size", "local_steps", "local_epochs", "loss")

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
    ("leakage", "Leakage per round"),
    ("accuracy", "Accuracy"),
    ("gallery", "Truth vs reconstruction"),
    ("threat-model", "Threat model"),
    ("config", "Resolved config"),
)


def esc(value: object) -> str:
    """``str(value)`` escaped for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return esc(value)


def data_uri(png: Path) -> str:
    """The PNG file as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _figure(png: Path, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{data_uri(png)}" alt="{esc(alt)}">{cap}</figure>'


def _table(columns: list[str], rows: Iterable[Iterable[object]], text_cols: int = 0) -> str:
    def cls(i: int) -> str:
        return ' class="text"' if i < text_cols else ""

    head = "".join(f"<th{cls(i)}>{esc(c)}</th>" for i, c in enumerate(columns))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{_cell(v)}</td>" for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _tree(value: Any) -> str:
    """A YAML/JSON tree as nested key/value tables; lists of scalars inline."""
    if isinstance(value, Mapping):
        if not value:
            return '<span class="muted">{}</span>'
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{_tree(v)}</td></tr>" for k, v in value.items())
        return f'<table class="tree">{rows}</table>'
    if isinstance(value, list):
        if all(not isinstance(v, Mapping | list) for v in value):
            return "<code>[" + ", ".join(esc(_scalar(v)) for v in value) + "]</code>"
        return "<ol>" + "".join(f"<li>{_tree(v)}</li>" for v in value) + "</ol>"
    return f"<code>{esc(_scalar(value))}</code>"


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_config(paths: RunPaths) -> dict[str, Any]:
    """The run's resolved ``config.yaml`` as a mapping (empty when missing or unreadable)."""
    try:
        loaded = yaml.safe_load(paths.config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def active_defenses(config: Mapping[str, Any]) -> list[str]:
    """Defenses the config turns on, read generically from its ``defense`` tree.

    Every mapping under ``defense`` with ``enabled: true`` is active (named by its key path,
    with its other settings); a ``defense.name`` other than ``none`` is active too.
    """
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, Mapping):
            return
        if node.get("enabled") is True:
            settings = ", ".join(f"{k}={_scalar(v)}" for k, v in node.items() if k != "enabled")
            found.append(f"{path} ({settings})" if settings else path)
        for key, child in node.items():
            walk(child, f"{path}.{key}")

    defense = config.get("defense")
    if isinstance(defense, Mapping):
        name = defense.get("name")
        if isinstance(name, str) and name != "none":
            found.append(name)
        walk(defense, "defense")
        for extra, settings in (defense.get("extra") or {}).items():  # on by being listed
            shown = ", ".join(f"{k}={_scalar(v)}" for k, v in (settings or {}).items())
            found.append(f"defense.extra.{extra} ({shown})" if shown else f"defense.extra.{extra}")
    return found


def _requirements(name: str) -> set[str] | None:
    from simulator.choices import attack_requirements

    try:
        return set(attack_requirements(name))
    except (ValueError, ImportError):
        return None


def _group(config: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = config.get(key)
    return value if isinstance(value, Mapping) else {}


def _settings(group: Mapping[str, Any], keys: Iterable[str]) -> str:
    return ", ".join(f"{k}={_scalar(group[k])}" for k in keys if k in group) or "-"


def _requirement_rows(names: Iterable[object], disclose: set[str]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for name in names:
        needs = _requirements(str(name))
        if needs is None:
            rows.append((name, "unknown (not registered here)", "-"))
            continue
        missing = sorted(needs - disclose)
        covered = "no: " + ", ".join(missing) if missing else "yes"
        rows.append((name, ", ".join(sorted(needs)) or "nothing beyond a plain server", covered))
    return rows


def _privacy_budget(paths: RunPaths) -> str:
    """``privacy.json`` (the DP budget a run spent), when the run wrote one."""
    try:
        budget = json.loads(paths.privacy.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return "<h3>Privacy budget spent (local DP)</h3>" + _tree(budget)


def _server_knowledge(defenses: list[str]) -> tuple[str, ...]:
    if not any(d.startswith("defense.secagg") for d in defenses):
        return SERVER_KNOWLEDGE
    masked = "under secure aggregation only the round's aggregate, never a single reply"
    return tuple(masked if "reply" in item else item for item in SERVER_KNOWLEDGE)


def _threat_model(config: Mapping[str, Any], paths: RunPaths) -> str:
    attack = _group(config, "attack")
    hyper = _settings(_group(config, "federation"), HYPERPARAMETER_KEYS)
    policy = _settings(attack, ("rounds", "client_fraction", "client_ids"))
    disclose = [str(d) for d in attack.get("disclose") or []]
    rows = _requirement_rows(attack.get("names") or [], set(disclose))
    defenses = active_defenses(config)
    parts = [
        "<h3>What an honest-but-curious Flower server sees</h3><ul>",
        *(f"<li>{esc(item)}</li>" for item in _server_knowledge(defenses)),
        f"</ul><p>Hyperparameters sent: <code>{esc(hyper)}</code></p>",
        "<h3>Disclosed beyond a plain Flower server</h3>",
        f"<p><code>{esc(', '.join(disclose))}</code></p>"
        if disclose
        else "<p>nothing: the server knows only what a plain Flower server knows</p>",
        "<h3>What each attack requires</h3>",
        _table(["attack", "requires", "covered by disclose"], rows, text_cols=3)
        if rows
        else '<p class="muted">no attacks configured</p>',
        "<h3>Active defenses</h3>",
        "<ul>" + "".join(f"<li><code>{esc(d)}</code></li>" for d in defenses) + "</ul>"
        if defenses
        else "<p>none: clients send their plain updates</p>",
        _privacy_budget(paths),
        f"<h3>Which updates are attacked</h3><p><code>{esc(policy)}</code></p>",
        "<h3>Ground truth</h3><p>",
        "clients write the samples they used to the audit store, read only by the auditor "
        "to score reconstructions; it never travels over Flower"
        if attack.get("audit") is not False
        else "no audit store: attacks run, nothing is scored",
        "</p>",
    ]
    return "".join(parts)


def _summary(
    config: Mapping[str, Any],
    records: list[LeakageRecord],
    summary_rows: list[dict[str, Any]],
    training_rows: list[dict[str, Any]],
) -> str:
    def get(*keys: str) -> object:
        node: Any = config
        for key in keys:
            node = node.get(key) if isinstance(node, Mapping) else None
        return "-" if node is None else node

    accuracy = [
        r["test_accuracy"] for r in training_rows if isinstance(r.get("test_accuracy"), float | int)
    ]
    ok = sum(r.status == STATUS_OK for r in records)
    facts = [
        ("experiment", get("name")),
        ("data set", get("dataset", "name")),
        ("model", get("model", "name")),
        ("clients x rounds", f"{get('federation', 'num_clients')} x {get('federation', 'rounds')}"),
        ("training", get("federation", "mode")),
        ("leakage rows", f"{len(records)} ({ok} ok)"),
        ("final test accuracy", f"{accuracy[-1]:.3f}" if accuracy else "-"),
    ]
    head = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    parts = [
        f'<table class="tree">{head}</table>',
        "<h3>Per round and attack (mean over successful attacks)</h3>",
    ]
    if summary_rows:
        columns = list(summary_rows[0])
        parts.append(_table(columns, ([row[c] for c in columns] for row in summary_rows), 2))
    else:
        parts.append('<p class="muted">no leakage rows recorded</p>')
    problems = Counter(
        (r.attack, r.status, r.reason[:300]) for r in records if r.status != STATUS_OK
    )
    if problems:
        parts.append("<h3>Rows without a reconstruction</h3>")
        rows = [(a, s, reason or "-", n) for (a, s, reason), n in sorted(problems.items())]
        parts.append(_table(["attack", "status", "reason", "rows"], rows, text_cols=3))
    return "".join(parts)


def _plots_section(plots: Mapping[str, Path], keys: list[tuple[str, str]], empty: str) -> str:
    figures = [_figure(plots[k], title) for k, title in keys if k in plots]
    if not figures:
        return f'<p class="muted">{esc(empty)}</p>'
    return '<div class="plots">' + "".join(figures) + "</div>"


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
            f"{a}: mean PSNR {sum(v) / len(v):.1f} dB" for a, v in sorted(psnr.items())
        )
        parts.append(f"<h3>Round {server_round}</h3>")
        if grid.is_file():
            parts.append(_figure(grid, f"round {server_round}: truth vs reconstruction", caption))
        else:
            parts.append(
                '<p class="muted">no image grid: no audited, successful reconstruction</p>'
            )
    return "".join(parts)


def render_html(
    paths: RunPaths,
    records: list[LeakageRecord],
    summary_rows: list[dict[str, Any]],
    plots: Mapping[str, Path],
) -> str:
    """The whole report page as one HTML string (see the module docstring)."""
    config = read_config(paths)
    training_rows = read_jsonl_rows(paths.training_jsonl)
    leakage_keys = [(m.key, m.title) for m in LEAKAGE_METRICS]
    bodies = {
        "summary": _summary(config, records, summary_rows, training_rows),
        "leakage": _plots_section(plots, leakage_keys, "no successful attack to plot"),
        "accuracy": _plots_section(
            plots, [(ACCURACY_PLOT, "Accuracy and loss per round")], "no accuracy recorded"
        ),
        "gallery": _gallery(paths, records),
        "threat-model": _threat_model(config, paths),
        "config": (_tree(config) if config else '<p class="muted">config.yaml missing</p>')
        + "<details><summary>config.yaml</summary><pre>"
        + esc(paths.config.read_text(encoding="utf-8") if paths.config.is_file() else "")
        + "</pre></details>",
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
    paths: RunPaths, records: list[LeakageRecord], summary_rows: list[dict[str, Any]]
) -> Path:
    """Write the run's PNG plots, then ``report.html`` (atomically) from them.

    Parameters
    ----------
    paths : RunPaths
        The run directory; its grids (``grids/``) should already be written.
    records : list of LeakageRecord
        The run's leakage rows.
    summary_rows : list of dict
        Per-(round, attack) rows of :func:`simulator.report.summarise`.

    Returns
    -------
    Path
        ``paths.report_html``.
    """
    plots = write_plots(paths, records, read_jsonl_rows(paths.training_jsonl))
    page = render_html(paths, records, summary_rows, plots)
    partial = paths.report_html.with_suffix(".html.partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(paths.report_html)
    return paths.report_html
