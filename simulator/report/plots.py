"""PNG plots of a run: per-round leakage curves per attack, and the accuracy curve.

Figures are drawn on :class:`matplotlib.figure.Figure` directly (Agg canvas, no pyplot
state), so plotting works headless and from any thread.

Two choices keep the curves readable. PSNR of an exact recovery is huge and arbitrary
(138 dB, or the 300 dB cap for a bit-exact sample) and would squash every other value, so
PSNR at or above :data:`EXACT_PSNR_DB` is drawn inside a shaded band at the top of the
axis labelled "exact recovery". Curves that coincide (two attacks both at recovery 1.0)
stay visible: each attack has its own marker and line style, and is shifted sideways by
a small fraction of a round.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from fedleak.simulator.metrics.leakage import AVD_THRESHOLD
from fedleak.simulator.runtime.results import STATUS_OK, LeakageRecord, RunPaths


@dataclass(frozen=True)
class LeakageMetric:
    """One leakage metric plotted per round: its record field, label and file stem."""

    key: str
    field: str
    label: str
    title: str


LEAKAGE_METRICS = (
    LeakageMetric("psnr", "psnr_mean", "PSNR [dB]", "PSNR of the reconstruction"),
    LeakageMetric("ssim", "ssim_mean", "SSIM", "SSIM of the reconstruction"),
    LeakageMetric("avd", "avd_mean", "AVD (lower leaks more)", "Average distance (AVD)"),
    LeakageMetric("recovery", "recovery_rate", "recovery rate", "Recovery rate (AVD < 0.6)"),
)
ACCURACY_PLOT = "accuracy"
LEARNING_PLOT = "leakage_accuracy"
EXACT_PSNR_DB = 60.0
"""PSNR from which a reconstruction counts as exact: an error of one grey level of an 8-bit
image at every pixel is already 48 dB, so >= 60 dB is below what an image file can hold."""
BAND_DB = 8.0
"""Height of the exact-recovery band drawn above :data:`EXACT_PSNR_DB`."""
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINE_STYLES = ("-", "--", "-.", ":")
DODGE = 0.08
"""Sideways shift between attacks, in rounds, so coinciding curves stay visible."""


@dataclass(frozen=True)
class Band:
    """Per-round statistics of one metric for one attack, over its successful updates."""

    rounds: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def leakage_bands(records: Iterable[LeakageRecord], field: str) -> dict[str, Band]:
    """Mean, min and max of ``field`` per round for each attack (``ok`` rows, finite values).

    Parameters
    ----------
    records : iterable of LeakageRecord
        The run's rows; rows that are not ``ok`` or have a NaN ``field`` are ignored.
    field : str
        A float field of :class:`~fedleak.simulator.runtime.results.LeakageRecord`, e.g.
        ``"psnr_mean"``.

    Returns
    -------
    dict of str to Band
        One band per attack with at least one value, rounds ascending.
    """
    values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        value = getattr(record, field)
        if record.status == STATUS_OK and not math.isnan(value):
            values[record.attack][record.round].append(float(value))
    bands = {}
    for attack, by_round in sorted(values.items()):
        rounds = sorted(by_round)
        bands[attack] = Band(
            rounds=np.array(rounds),
            mean=np.array([np.mean(by_round[r]) for r in rounds]),
            low=np.array([np.min(by_round[r]) for r in rounds]),
            high=np.array([np.max(by_round[r]) for r in rounds]),
        )
    return bands


def _save(fig: Figure, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=100, bbox_inches="tight")
    return target


def _integer_rounds(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.grid(True, alpha=0.3)


def _style(index: int, count: int) -> dict[str, Any]:
    """Marker, line style and size of the ``index``-th of ``count`` curves (later: smaller)."""
    return {
        "marker": MARKERS[index % len(MARKERS)],
        "ls": LINE_STYLES[index % len(LINE_STYLES)],
        "markersize": max(3.0, 7.0 - 1.5 * index),
        "markerfacecolor": "none" if index % 2 else None,
        "zorder": 3 + count - index,
    }


def _dodge(rounds: np.ndarray, index: int, count: int) -> np.ndarray:
    return rounds + (index - (count - 1) / 2) * DODGE


def exact_band(values: np.ndarray) -> np.ndarray:
    """PSNR as drawn: values at or above :data:`EXACT_PSNR_DB` move to the band's middle."""
    return np.where(values >= EXACT_PSNR_DB, EXACT_PSNR_DB + BAND_DB / 2, values)


def _draw_exact_band(ax: Any, bands: dict[str, Band]) -> None:
    """Shade and label the exact-recovery band when some PSNR reaches it."""
    if not any((band.high >= EXACT_PSNR_DB).any() for band in bands.values()):
        return
    ax.axhspan(EXACT_PSNR_DB, EXACT_PSNR_DB + BAND_DB, color="#2da44e", alpha=0.12, lw=0)
    ax.text(
        0.01,
        EXACT_PSNR_DB + BAND_DB * 0.82,
        f"exact recovery (>= {EXACT_PSNR_DB:g} dB)",
        transform=ax.get_yaxis_transform(),
        fontsize=7,
        va="center",
        color="#1a7f37",
    )
    low = min(0.0, *(float(band.low.min()) for band in bands.values()))
    ax.set_ylim(low, EXACT_PSNR_DB + BAND_DB)


def _draw_bands(ax: Any, bands: dict[str, Band], psnr: bool) -> None:
    for index, (attack, band) in enumerate(bands.items()):
        x = _dodge(band.rounds, index, len(bands))
        mean, low, high = (
            (exact_band(band.mean), exact_band(band.low), exact_band(band.high))
            if psnr
            else (band.mean, band.low, band.high)
        )
        (line,) = ax.plot(x, mean, label=attack, **_style(index, len(bands)))
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15)


def _save_or_remove(fig: Figure | None, target: Path) -> Path | None:
    if fig is None:
        target.unlink(missing_ok=True)
        return None
    return _save(fig, target)


def plot_leakage(records: list[LeakageRecord], metric: LeakageMetric, target: Path) -> Path | None:
    """Write :func:`leakage_figure` to ``target``; ``None`` (stale file removed) without data."""
    return _save_or_remove(leakage_figure(records, metric), target)


def leakage_figure(records: list[LeakageRecord], metric: LeakageMetric) -> Figure | None:
    """One metric's per-round curve per attack (mean, min-max band); ``None`` without data."""
    bands = leakage_bands(records, metric.field)
    if not bands:
        return None
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    _draw_bands(ax, bands, psnr=metric.key == "psnr")
    if metric.key == "psnr":
        for attack, band in leakage_bands(records, "psnr_init_mean").items():
            ax.plot(band.rounds, band.mean, ls="--", color="gray", lw=1, label=f"{attack} (init)")
        _draw_exact_band(ax, bands)
    if metric.key == "avd":
        ax.axhline(
            AVD_THRESHOLD, ls=":", color="gray", lw=1, label=f"recovered below {AVD_THRESHOLD}"
        )
        if all((band.low > 0).all() for band in bands.values()):
            ax.set_yscale("log")
    if metric.key in ("ssim", "recovery"):  # bounded scores: a full axis, no offset ticks
        ax.set_ylim(min(0.0, *(band.low.min() for band in bands.values())) - 0.05, 1.05)
    ax.set_ylabel(metric.label)
    ax.set_title(f"{metric.title}: mean over updates, band min-max", fontsize=10)
    _integer_rounds(ax)
    ax.legend(fontsize=8)
    return fig


def plot_learning(
    records: list[LeakageRecord], training_rows: list[dict[str, Any]], target: Path
) -> Path | None:
    """Write :func:`learning_figure` to ``target``; ``None`` (stale file removed) without data."""
    return _save_or_remove(learning_figure(records, training_rows), target)


def learning_figure(
    records: list[LeakageRecord], training_rows: list[dict[str, Any]]
) -> Figure | None:
    """Leakage (PSNR) and test accuracy on one round axis, one panel per attack.

    Shows whether an attack's leakage rises or falls as the global model learns. ``None``
    without PSNR rows or accuracy rows.
    """
    bands = leakage_bands(records, "psnr_mean")
    rounds, accuracy = _series(training_rows, "test_accuracy")
    if not bands or not rounds:
        return None
    columns = min(3, len(bands))
    rows = math.ceil(len(bands) / columns)
    fig = Figure(figsize=(4.6 * columns, 3.3 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).flat
    for ax, (attack, band) in zip(axes, bands.items(), strict=False):
        _draw_bands(ax, {attack: band}, psnr=True)
        ax.set_ylim(bottom=min(0.0, float(band.low.min())))  # a fair scale: from 0 dB
        _draw_exact_band(ax, {attack: band})
        ax.set_ylabel("PSNR [dB]", color="C0")
        ax.set_title(attack, fontsize=10)
        _integer_rounds(ax)
        twin = ax.twinx()
        twin.plot(rounds, accuracy, color="black", lw=1.2, marker=".", label="test accuracy")
        twin.set_ylim(0.0, 1.0)
        twin.set_ylabel("test accuracy")
        ax.set_xlim(min(rounds[0], int(band.rounds[0])) - 0.5, max(rounds[-1], 1) + 0.5)
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles, ["PSNR (band: min-max)", "test accuracy"], fontsize=7, loc="best")
    for ax in list(axes):  # panels left over in the last row
        ax.set_visible(False)
    fig.suptitle("Leakage (PSNR, mean and min-max) and test accuracy per round", fontsize=10)
    return fig


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [
        (int(row["round"]), float(row[key]))
        for row in rows
        if isinstance(row.get(key), int | float) and "round" in row
    ]
    return [p[0] for p in points], [p[1] for p in points]


def plot_accuracy(training_rows: list[dict[str, Any]], target: Path) -> Path | None:
    """Write test accuracy and the train/test loss per round (round 0: initial model).

    Returns ``None`` (and removes a stale ``target``) when no row has a test accuracy.
    """
    rounds, accuracy = _series(training_rows, "test_accuracy")
    if not rounds:
        target.unlink(missing_ok=True)
        return None
    fig = Figure(figsize=(9.6, 3.4))
    acc_ax, loss_ax = fig.subplots(1, 2)
    acc_ax.plot(rounds, accuracy, marker="o")
    acc_ax.set_ylabel("test accuracy")
    acc_ax.set_ylim(0.0, 1.0)
    acc_ax.set_title("Test accuracy of the global model", fontsize=10)
    for key in ("test_loss", "train_loss"):
        loss_rounds, loss = _series(training_rows, key)
        if loss_rounds:
            loss_ax.plot(loss_rounds, loss, marker="o", label=key.replace("_", " "))
    loss_ax.set_ylabel("loss")
    loss_ax.set_title("Loss", fontsize=10)
    loss_ax.legend(fontsize=8)
    for ax in (acc_ax, loss_ax):
        _integer_rounds(ax)
    return _save(fig, target)


def write_plots(
    paths: RunPaths, records: list[LeakageRecord], training_rows: list[dict[str, Any]]
) -> dict[str, Path]:
    """Write every plot of the run into ``paths.plots``.

    Returns
    -------
    dict of str to Path
        The written PNG per plot key (``psnr``, ``ssim``, ``avd``, ``recovery``,
        ``accuracy``, ``leakage_accuracy``); keys without data are absent.
    """
    written: dict[str, Path] = {}
    for metric in LEAKAGE_METRICS:
        target = plot_leakage(records, metric, paths.plot_file(f"leakage_{metric.key}"))
        if target is not None:
            written[metric.key] = target
    accuracy = plot_accuracy(training_rows, paths.plot_file(ACCURACY_PLOT))
    if accuracy is not None:
        written[ACCURACY_PLOT] = accuracy
    learning = plot_learning(records, training_rows, paths.plot_file(LEARNING_PLOT))
    if learning is not None:
        written[LEARNING_PLOT] = learning
    return written
