"""The report's per-round gallery picture for each modality, one drawer per modality.

- ``image``: the truth-over-reconstruction grid of :mod:`fedleak.simulator.report.images`;
- ``signal``: one panel per true series with each attack's matched reconstruction overlaid
  (its PSNR over the series' range in the legend);
- ``tabular``: a table of true rows and each attack's recovered rows, decoded to categories
  and original units by the run's encoder, wrong discrete cells shaded.

Every drawer reads the run directory only (audit store, saved reconstructions,
``domain.json``) and writes ``grids/round_NNNN.png``, which the HTML report embeds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from fedleak.attacks.name_table import Registry
from fedleak.simulator.data.domain import DataDomain
from fedleak.simulator.data.tabular import TabularEncoder
from fedleak.simulator.metrics.modality import signal_psnr
from fedleak.simulator.report.findings import owner_label
from fedleak.simulator.report.images import aligned, write_round_grid
from fedleak.simulator.runtime.audit import AuditStore
from fedleak.simulator.runtime.results import STATUS_OK, LeakageRecord, RunPaths

MAX_SIGNALS = 8
"""Series shown per round (two rows of four panels)."""
MAX_ROWS = 6
"""True table rows shown per round, each followed by every attack's recovered row."""

Sample = tuple[str, np.ndarray, dict[str, np.ndarray]]
"""``(owner, true sample, {attack: matched reconstruction})``."""


def round_samples(
    paths: RunPaths, server_round: int, records: list[LeakageRecord], limit: int
) -> tuple[list[Sample], list[str]]:
    """The first ``limit`` audited samples of a round (by client) with each attack's match."""
    audit = AuditStore(paths.audit)
    ok = [r for r in records if r.round == server_round and r.status == STATUS_OK]
    attacks = sorted({r.attack for r in ok})
    samples: list[Sample] = []
    nodes = sorted({(r.client, r.node_id) for r in ok if audit.has(server_round, r.node_id)})
    for _, node in nodes:
        rows = [r for r in ok if r.node_id == node]
        truth = audit.read(server_round, node).inputs
        recons = {r.attack: aligned(paths, r, truth) for r in rows}
        for i in range(len(truth)):
            if len(samples) >= limit:
                return samples, attacks
            matched = {
                a: rec[i]
                for a, rec in recons.items()
                if rec is not None and not np.isnan(rec[i]).any()
            }
            samples.append((owner_label(rows[0]), truth[i], matched))
    return samples, attacks


def _save(fig: object, paths: RunPaths, server_round: int) -> Path:
    paths.grids.mkdir(parents=True, exist_ok=True)
    target = paths.grids / f"round_{server_round:04d}.png"
    fig.savefig(target, dpi=100, bbox_inches="tight")  # type: ignore[attr-defined]
    return target


def write_signal_plot(
    paths: RunPaths, server_round: int, records: list[LeakageRecord], domain: DataDomain
) -> Path | None:
    """Overlaid line plots of true and recovered series; ``None`` with nothing to show."""
    from matplotlib.figure import Figure

    samples, attacks = round_samples(paths, server_round, records, MAX_SIGNALS)
    if not samples:
        return None
    cols = min(4, len(samples))
    rows = -(-len(samples) // cols)
    fig = Figure(figsize=(3.2 * cols, 2.2 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (owner, truth, recons) in zip(axes, samples, strict=False):
        ax.plot(truth.ravel(), color="black", linewidth=2.0, label="truth")
        for attack in attacks:
            if attack in recons:
                db = float(signal_psnr(truth[None], recons[attack][None])[0])
                ax.plot(recons[attack].ravel(), "--", linewidth=1.2, label=f"{attack} {db:.0f} dB")
        ax.set_title(owner, fontsize=8)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6, loc="best")
    for ax in axes[len(samples) :]:
        ax.set_visible(False)
    fig.suptitle(
        f"round {server_round}: true series (black) and reconstructions (PSNR over its range)",
        fontsize=9,
        y=1.02,
    )
    return _save(fig, paths, server_round)


def _format(value: str | float) -> str:
    """Categories as they are, numbers to two decimals (``-0.00`` read as ``0.00``)."""
    if isinstance(value, str):
        return value
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def table_rows(
    samples: list[Sample], attacks: list[str], encoder: TabularEncoder
) -> tuple[list[list[str]], list[list[bool]]]:
    """Decoded cells (``who`` first) and, per cell, whether it differs from its true row."""
    cells: list[list[str]] = []
    wrong: list[list[bool]] = []
    for owner, truth, recons in samples:
        (true_row,) = encoder.decode(truth[None])
        cells.append([f"truth ({owner})", *(_format(v) for v in true_row.values())])
        wrong.append([False] * (len(true_row) + 1))
        for attack in (a for a in attacks if a in recons):
            (row,) = encoder.decode(recons[attack][None])
            cells.append([attack, *(_format(v) for v in row.values())])
            flags = [isinstance(v, str) and v != true_row[k] for k, v in row.items()]
            wrong.append([False, *flags])
    return cells, wrong


def write_table_figure(
    paths: RunPaths, server_round: int, records: list[LeakageRecord], domain: DataDomain
) -> Path | None:
    """True rows and recovered rows, decoded; ``None`` with nothing to show or no encoder."""
    from matplotlib.figure import Figure

    if domain.encoder is None:
        return None
    samples, attacks = round_samples(paths, server_round, records, MAX_ROWS)
    if not samples:
        return None
    cells, wrong = table_rows(samples, attacks, domain.encoder)
    header = ["row", *(f.name for f in domain.encoder.features)]
    fig = Figure(figsize=(1.1 * len(header) + 1, 0.25 * len(cells) + 0.8))
    ax = fig.subplots()
    ax.axis("off")
    colours = [
        [
            "#f4c7c3" if bad else ("#eeeeee" if row[0].startswith("truth") else "white")
            for bad in flags
        ]
        for row, flags in zip(cells, wrong, strict=True)
    ]
    table = ax.table(cellText=cells, colLabels=header, cellColours=colours, loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.auto_set_column_width(list(range(len(header))))
    ax.set_title(
        f"round {server_round}: true rows (grey) and recovered rows; wrong categories shaded",
        fontsize=9,
    )
    return _save(fig, paths, server_round)


def _image_grid(
    paths: RunPaths, server_round: int, records: list[LeakageRecord], domain: DataDomain
) -> Path | None:
    return write_round_grid(paths, server_round, records)


Drawer = Callable[[RunPaths, int, list[LeakageRecord], DataDomain], Path | None]
DRAWERS: Registry[Drawer] = Registry("gallery drawer")
"""The round picture of each modality."""
DRAWERS.register("image", _image_grid)
DRAWERS.register("signal", write_signal_plot)
DRAWERS.register("tabular", write_table_figure)


def write_round_gallery(
    paths: RunPaths, server_round: int, records: list[LeakageRecord]
) -> Path | None:
    """Draw a round's gallery picture the way the run's modality (``domain.json``) needs.

    Raises
    ------
    ValueError
        For a modality without a drawer, naming the ones there are.
    """
    domain = DataDomain.read(paths.root)
    return DRAWERS.get(domain.modality)(paths, server_round, records, domain)
