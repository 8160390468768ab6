"""The report's image products: per-round grids (client id and PSNR per image) and LPIPS.

Both read the run directory only: the audit store's ground truth and the reconstructions the
recorder saved, paired sample by sample with the same assignment the metrics used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedleak.simulator.metrics.leakage import match_samples, psnr
from fedleak.simulator.metrics.lpips import Scorer
from fedleak.simulator.report.findings import owner_label
from fedleak.simulator.runtime.audit import AuditStore
from fedleak.simulator.runtime.results import STATUS_OK, LeakageRecord, RunPaths

MAX_SAMPLES_PER_UPDATE = 8
"""Samples of one update shown in a grid (a batch of 64 would make the grid unreadable)."""
MAX_GRID_COLUMNS = 16
"""Samples of one round shown in a grid, the first clients' first: 32 clients' columns made a
grid unreadable, and one matplotlib axes per image took ~4 s a round."""


@dataclass(frozen=True)
class GridColumn:
    """One true sample, who held it, and each attack's matched reconstruction with its PSNR."""

    truth: np.ndarray
    owner: str
    recons: dict[str, tuple[np.ndarray, float]]


def aligned(paths: RunPaths, record: LeakageRecord, truth: np.ndarray) -> np.ndarray | None:
    """The row's saved reconstruction reordered to ``truth`` (NaN where nothing matched)."""
    file = paths.reconstruction_file(record.round, record.node_id, record.attack)
    if not file.is_file():
        return None
    with np.load(file) as data:
        recon = data["inputs"]
    if recon.shape[1:] != truth.shape[1:] or not len(recon):
        return None
    t_idx, r_idx = match_samples(truth, recon)
    out = np.full(truth.shape, np.nan, dtype=np.float64)
    out[t_idx] = recon[r_idx]
    return out


def _update_columns(
    paths: RunPaths, truth: np.ndarray, rows: list[LeakageRecord], attacks: list[str]
) -> list[GridColumn]:
    by_attack = {r.attack: r for r in rows}
    recon_by_attack = {}
    for attack in attacks:
        if attack in by_attack:
            recon = aligned(paths, by_attack[attack], truth)
            if recon is not None:
                recon_by_attack[attack] = recon
    columns = []
    for i in range(min(len(truth), MAX_SAMPLES_PER_UPDATE)):
        recons = {
            attack: (recon[i], float(psnr(truth[i : i + 1], recon[i : i + 1])[0]))
            for attack, recon in recon_by_attack.items()
            if not np.isnan(recon[i]).any()
        }
        columns.append(GridColumn(truth[i], owner_label(rows[0]), recons))
    return columns


def grid_columns(
    paths: RunPaths, server_round: int, records: list[LeakageRecord]
) -> tuple[list[GridColumn], list[str]]:
    """The columns of a round's grid and its attacks; no columns without audited images."""
    audit = AuditStore(paths.audit)
    ok = [r for r in records if r.round == server_round and r.status == STATUS_OK]
    attacks = sorted({r.attack for r in ok})
    columns: list[GridColumn] = []
    nodes = {(r.client, r.node_id) for r in ok if audit.has(server_round, r.node_id)}
    for _, node in sorted(nodes):  # by client id: the same order in every round
        if len(columns) >= MAX_GRID_COLUMNS:
            break
        truth = audit.read(server_round, node).inputs
        if truth.ndim != 4:
            return [], attacks
        rows = sorted((r for r in ok if r.node_id == node), key=lambda r: r.attack)
        columns += _update_columns(paths, truth, rows, attacks)
    return columns[:MAX_GRID_COLUMNS], attacks


def _as_display(sample: np.ndarray) -> np.ndarray:
    """(C,H,W) in [0,1] -> (H,W) or (H,W,3) for imshow."""
    image = np.clip(sample, 0.0, 1.0)
    return image[0] if image.shape[0] == 1 else np.transpose(image[:3], (1, 2, 0))


def _mosaic(columns: list[GridColumn], attacks: list[str]) -> tuple[np.ndarray, int, int]:
    """One RGB image of the grid: truth on top, one row per attack, white gaps and blanks;
    (image, cell height, cell width)."""
    height, width = _as_display(columns[0].truth).shape[:2]
    rows = 1 + len(attacks)
    mosaic = np.ones(((height + 1) * rows - 1, (width + 1) * len(columns) - 1, 3))
    for col, column in enumerate(columns):
        cells = [column.truth, *(column.recons.get(a, (None, 0.0))[0] for a in attacks)]
        for row, cell in enumerate(cells):
            if cell is None:
                continue
            image = _as_display(cell)
            y, x = row * (height + 1), col * (width + 1)
            mosaic[y : y + height, x : x + width] = image if image.ndim == 3 else image[..., None]
    return mosaic, height, width


def write_round_grid(
    paths: RunPaths, server_round: int, records: list[LeakageRecord]
) -> Path | None:
    """Truth in the top row (titled with its client), each attack's match below (its PSNR),
    at most :data:`MAX_GRID_COLUMNS` samples, drawn as one image with its labels.

    Returns ``None`` when there is nothing to show (no audited images).
    """
    from matplotlib.figure import Figure

    columns, attacks = grid_columns(paths, server_round, records)
    if not columns:
        return None
    mosaic, height, width = _mosaic(columns, attacks)
    rows = 1 + len(attacks)
    fig = Figure(figsize=(0.75 * len(columns) + 1, 0.95 * rows + 0.5))
    ax = fig.subplots()
    ax.imshow(mosaic, vmin=0, vmax=1, interpolation="nearest")
    for col, column in enumerate(columns):
        x = col * (width + 1) + width / 2 - 0.5
        ax.text(x, -1, column.owner, ha="center", va="bottom", fontsize=6)
        for row, attack in enumerate(attacks, start=1):
            if attack in column.recons:
                y = row * (height + 1) + height - 0.5
                value = column.recons[attack][1]
                ax.text(x, y, f"{value:.1f} dB", ha="center", va="top", fontsize=6)
    ax.set_yticks([r * (height + 1) + height / 2 - 0.5 for r in range(rows)], ["truth", *attacks])
    ax.tick_params(axis="y", length=0, labelsize=8)
    ax.set_xticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(
        f"round {server_round}: truth (top, with its client) vs reconstruction (PSNR per image)",
        fontsize=9,
        pad=12,
    )
    paths.grids.mkdir(parents=True, exist_ok=True)
    target = paths.grids / f"round_{server_round:04d}.png"
    fig.savefig(target, dpi=100, bbox_inches="tight")
    return target


RowKey = tuple[int, int, str]


def lpips_scores(
    paths: RunPaths, records: list[LeakageRecord], scorer: Scorer
) -> dict[RowKey, float]:
    """Mean LPIPS over each ``ok`` row's matched image pairs (lower: more alike)."""
    audit = AuditStore(paths.audit)
    scores: dict[RowKey, float] = {}
    for record in records:
        if record.status != STATUS_OK or not audit.has(record.round, record.node_id):
            continue
        truth = audit.read(record.round, record.node_id).inputs
        if truth.ndim != 4:
            continue
        recon = aligned(paths, record, truth)
        if recon is None:
            continue
        matched = ~np.isnan(recon).reshape(len(recon), -1).any(axis=1)
        if matched.any():
            values = scorer(truth[matched], recon[matched])
            scores[(record.round, record.node_id, record.attack)] = float(np.mean(values))
    return scores


def mean_lpips(scores: dict[RowKey, float], group: list[LeakageRecord]) -> float:
    """Mean LPIPS of the rows of ``group`` that have one (NaN when none has)."""
    values = [scores[k] for k in ((r.round, r.node_id, r.attack) for r in group) if k in scores]
    return float(np.mean(values)) if values else math.nan
