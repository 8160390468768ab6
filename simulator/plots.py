"""PNG plots of a run: per-round leakage curves per attack, and the accuracy curve.

Figures are drawn on :class:`matplotlib.figure.Figure` directly (Agg canvas, no pyplot
state), so plotting works headless and from any thread.
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

from simulator.metrics import AVD_THRESHOLD
from simulator.results import STATUS_OK, LeakageRecord, RunPaths


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
        A float field of :class:`~simulator.results.LeakageRecord`, e.g. ``"psnr_mean"``.

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


def plot_leakage(records: list[LeakageRecord], metric: LeakageMetric, target: Path) -> Path | None:
    """Write one metric's per-round curve per attack (mean, min-max band) to ``target``.

    Returns ``None`` (and removes a stale ``target``) when no ``ok`` row has the metric.
    """
    bands = leakage_bands(records, metric.field)
    if not bands:
        target.unlink(missing_ok=True)
        return None
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    for attack, band in bands.items():
        (line,) = ax.plot(band.rounds, band.mean, marker="o", label=attack)
        ax.fill_between(band.rounds, band.low, band.high, color=line.get_color(), alpha=0.2)
    if metric.key == "psnr":
        for attack, band in leakage_bands(records, "psnr_init_mean").items():
            ax.plot(band.rounds, band.mean, ls="--", color="gray", lw=1, label=f"{attack} (init)")
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
    return _save(fig, target)


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
        ``accuracy``); keys without data are absent.
    """
    written: dict[str, Path] = {}
    for metric in LEAKAGE_METRICS:
        target = plot_leakage(records, metric, paths.plot_file(f"leakage_{metric.key}"))
        if target is not None:
            written[metric.key] = target
    accuracy = plot_accuracy(training_rows, paths.plot_file(ACCURACY_PLOT))
    if accuracy is not None:
        written[ACCURACY_PLOT] = accuracy
    return written
