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
    STATUSES,
    LeakageRecord,
    RunPaths,
    read_jsonl_rows,
    read_leakage,
    status_counts,
    write_csv,
)

METRIC_COLUMNS = (
    "psnr_mean",
    "psnr_min",
    "psnr_init",
    "ssim",
    "avd",
    "label_acc",
    "recovery",
    "time_s",
)
SUMMARY_COLUMNS = ("round", "attack", "updates", *STATUSES, *METRIC_COLUMNS)
"""Columns of :func:`summarise` (a status no version knows yet adds its own column)."""
TEXT_HEADERS = {"not_applicable": "n/a"}
"""Shorter headers in the plain-text table, so it fits a terminal."""


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def summarise(records: list[LeakageRecord]) -> list[dict[str, float | int | str]]:
    """One row per (round, attack): a count per status and mean metrics over the ``ok`` rows.

    Every status has its own column (``ok``, ``failed``, ``not_applicable``, ``timeout``,
    ``skipped``, ``rejected``), so an attack that does not apply is never read as broken.
    """
    groups: dict[tuple[int, str], list[LeakageRecord]] = defaultdict(list)
    for record in records:
        groups[(record.round, record.attack)].append(record)
    every_status = list(status_counts(records))
    rows: list[dict[str, float | int | str]] = []
    for (server_round, attack), group in sorted(groups.items()):
        ok = [r for r in group if r.status == STATUS_OK]
        counts = status_counts(group)
        rows.append(
            {
                "round": server_round,
                "attack": attack,
                "updates": len(group),
                **{status: counts.get(status, 0) for status in every_status},
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

    columns = list(rows[0]) if rows else list(SUMMARY_COLUMNS)
    table = [[TEXT_HEADERS.get(c, c) for c in columns]]
    table += [[cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
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


def write_round_grid(
    paths: RunPaths, server_round: int, records: list[LeakageRecord]
) -> Path | None:
    """Truth in the top row, each attack's matched reconstruction below.

    Returns ``None`` when there is nothing to show (no audited images).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    audit = AuditStore(paths.audit)
    ok = [r for r in records if r.round == server_round and r.status == STATUS_OK]
    nodes = sorted({r.node_id for r in ok if audit.has(server_round, r.node_id)})
    attacks = sorted({r.attack for r in ok})
    columns: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    for node in nodes:
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
        for i in range(min(len(truth), 8)):
            columns.append((truth[i], {a: v[i] for a, v in recon_by_attack.items()}))
    if not columns:
        return None
    rows = 1 + len(attacks)
    fig, axes = plt.subplots(
        rows, len(columns), figsize=(1.2 * len(columns) + 1, 1.3 * rows), squeeze=False
    )
    for col, (truth_sample, recons) in enumerate(columns):
        axes[0][col].imshow(_as_display(truth_sample), cmap="gray", vmin=0, vmax=1)
        for row, attack in enumerate(attacks, start=1):
            if attack in recons and not np.isnan(recons[attack]).any():
                axes[row][col].imshow(_as_display(recons[attack]), cmap="gray", vmin=0, vmax=1)
    for row, label in enumerate(["truth", *attacks]):
        axes[row][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"round {server_round}: truth (top) vs reconstruction", fontsize=9)
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
    write_csv(paths.summary_csv, [dict(row) for row in rows])
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
