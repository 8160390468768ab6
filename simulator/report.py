"""End-of-run products, rebuilt from whatever rows exist: CSVs, summary, grids, plots, HTML."""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from simulator.audit import AuditStore
from simulator.config import ConfigError
from simulator.metrics import match_samples
from simulator.privacy import write_run_privacy
from simulator.results import (
    STATUS_OK,
    LeakageRecord,
    RunPaths,
    read_jsonl_rows,
    read_leakage,
    write_csv,
)

SUMMARY_COLUMNS = (
    "round",
    "attack",
    "updates",
    "ok",
    "failed",
    "psnr_mean",
    "psnr_min",
    "psnr_init",
    "ssim",
    "avd",
    "label_acc",
    "recovery",
    "time_s",
)


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def summarise(records: list[LeakageRecord]) -> list[dict[str, float | int | str]]:
    """One row per (round, attack): counts and mean metrics over its successful attacks."""
    groups: dict[tuple[int, str], list[LeakageRecord]] = defaultdict(list)
    for record in records:
        groups[(record.round, record.attack)].append(record)
    rows: list[dict[str, float | int | str]] = []
    for (server_round, attack), group in sorted(groups.items()):
        ok = [r for r in group if r.status == STATUS_OK]
        rows.append(
            {
                "round": server_round,
                "attack": attack,
                "updates": len(group),
                "ok": len(ok),
                "failed": len(group) - len(ok),
                "psnr_mean": _nanmean([r.psnr_mean for r in ok]),
                "psnr_min": min(
                    (r.psnr_min for r in ok if not math.isnan(r.psnr_min)), default=math.nan
                ),
                "psnr_init": _nanmean([r.psnr_init_mean for r in ok]),
                "ssim": _nanmean([r.ssim_mean for r in ok]),
                "avd": _nanmean([r.avd_mean for r in ok]),
                "label_acc": _nanmean([r.label_accuracy for r in ok]),
                "recovery": _nanmean([r.recovery_rate for r in ok]),
                "time_s": _nanmean([r.attack_time_s for r in group]),
            }
        )
    return rows


def format_table(rows: list[dict[str, float | int | str]]) -> str:
    """Plain-text table of :func:`summarise` rows (also what ``summary.txt`` holds)."""

    def cell(value: float | int | str) -> str:
        if isinstance(value, float):
            return (
                "-"
                if math.isnan(value)
                else f"{value:.3g}"
                if abs(value) < 1000
                else f"{value:.0f}"
            )
        return str(value)

    table = [list(SUMMARY_COLUMNS)] + [[cell(row[c]) for c in SUMMARY_COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(SUMMARY_COLUMNS))]
    lines = [
        "  ".join(text.rjust(width) for text, width in zip(line, widths, strict=True))
        for line in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _as_display(sample: np.ndarray) -> np.ndarray:
    """(C,H,W) in [0,1] -> (H,W) or (H,W,3) for imshow."""
    image = np.clip(sample, 0.0, 1.0)
    return image[0] if image.shape[0] == 1 else np.transpose(image[:3], (1, 2, 0))


GRID_COLUMNS = 16
"""Samples shown per round grid at most (the first nodes' first samples): a wider grid is
unreadable, and drawing one column per update of a 64-client round took seconds."""


def _grid_columns(
    paths: RunPaths, server_round: int, records: list[LeakageRecord]
) -> tuple[list[str], list[tuple[np.ndarray, dict[str, np.ndarray]]]] | None:
    """(attacks, [(truth sample, {attack: matched reconstruction})]); ``None``: not images."""
    audit = AuditStore(paths.audit)
    ok = [r for r in records if r.round == server_round and r.status == STATUS_OK]
    nodes = sorted({r.node_id for r in ok if audit.has(server_round, r.node_id)})
    attacks = sorted({r.attack for r in ok})
    columns: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    for node in nodes:
        if len(columns) >= GRID_COLUMNS:
            break
        truth = audit.read(server_round, node).inputs
        if truth.ndim != 4:
            return None
        recon_by_attack: dict[str, np.ndarray] = {}
        for attack in attacks:
            file = paths.reconstruction_file(server_round, node, attack)
            if file.is_file():
                with np.load(file) as data:
                    recon = data["inputs"]
                t_idx, r_idx = match_samples(truth, recon)
                aligned = np.full_like(truth, np.nan)
                aligned[t_idx] = recon[r_idx]
                recon_by_attack[attack] = aligned
        for i in range(min(len(truth), 8, GRID_COLUMNS - len(columns))):
            columns.append((truth[i], {a: v[i] for a, v in recon_by_attack.items()}))
    return attacks, columns


def _mosaic(
    attacks: list[str], columns: list[tuple[np.ndarray, dict[str, np.ndarray]]]
) -> np.ndarray:
    """One RGB image: truth row above one row per attack, 1-pixel white gaps, blank cells
    where an attack has no reconstruction of that sample."""
    first = _as_display(columns[0][0])
    height, width = first.shape[:2]
    rows = 1 + len(attacks)
    mosaic = np.ones(((height + 1) * rows - 1, (width + 1) * len(columns) - 1, 3))
    for col, (truth_sample, recons) in enumerate(columns):
        cells = [truth_sample, *(recons.get(a) for a in attacks)]
        for row, cell in enumerate(cells):
            if cell is None or np.isnan(cell).any():
                continue
            image = _as_display(cell)
            y, x = row * (height + 1), col * (width + 1)
            mosaic[y : y + height, x : x + width] = image if image.ndim == 3 else image[..., None]
    return mosaic


def write_round_grid(
    paths: RunPaths, server_round: int, records: list[LeakageRecord]
) -> Path | None:
    """Truth in the top row, each attack's matched reconstruction below (at most
    :data:`GRID_COLUMNS` samples), drawn as one image.

    Returns ``None`` when there is nothing to show (no audited images).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = _grid_columns(paths, server_round, records)
    if found is None or not found[1]:
        return None
    attacks, columns = found
    mosaic = _mosaic(attacks, columns)
    rows = 1 + len(attacks)
    fig, ax = plt.subplots(figsize=(0.6 * len(columns) + 1, 0.7 * rows + 0.5))
    ax.imshow(mosaic, vmin=0, vmax=1, interpolation="nearest")
    cell_height = (mosaic.shape[0] + 1) / rows
    ax.set_yticks([cell_height * (r + 0.5) - 1 for r in range(rows)], ["truth", *attacks])
    ax.tick_params(axis="y", length=0, labelsize=8)
    ax.set_xticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"round {server_round}: truth (top) vs reconstruction", fontsize=9)
    paths.grids.mkdir(parents=True, exist_ok=True)
    target = paths.grids / f"round_{server_round:04d}.png"
    fig.savefig(target, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return target


def build_report(paths: RunPaths) -> str:
    """Rebuild CSVs, ``summary.txt``, image grids, plots and ``report.html``; return the table.

    The rows' files come first, so a failure while drawing loses nothing recorded; a failing
    plot or HTML page is reported on stderr and does not fail the run.
    """
    records = read_leakage(paths.leakage_jsonl)
    write_csv(paths.leakage_csv, [asdict(r) for r in records])
    write_csv(paths.training_csv, read_jsonl_rows(paths.training_jsonl))
    rows = summarise(records)
    table = format_table(rows)
    paths.summary.write_text(table + "\n", encoding="utf-8")
    try:
        privacy_line = write_run_privacy(paths)
    except (ConfigError, OSError, ValueError) as exc:  # the rows' files are already written
        privacy_line = f"privacy budget not computed: {exc}"
    if privacy_line:
        table += "\n" + privacy_line
        paths.summary.write_text(table + "\n", encoding="utf-8")
    for server_round in sorted({r.round for r in records}):
        write_round_grid(paths, server_round, records)
    try:
        from simulator.html_report import write_html_report  # matplotlib only when drawing

        write_html_report(paths, records, rows)
    except Exception as exc:  # a drawing bug must not fail a finished run
        print(f"fedleak: warning: report.html not written: {exc!r}", file=sys.stderr)
    return table
