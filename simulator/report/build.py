"""End-of-run products, rebuilt from whatever rows exist: CSVs, summary, grids, plots, HTML."""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fedleak.simulator.config.schema import ConfigError
from fedleak.simulator.report.findings import defended_leaks
from fedleak.simulator.report.images import RowKey, lpips_scores, mean_lpips
from fedleak.simulator.report.modalities import write_round_gallery
from fedleak.simulator.runtime.privacy import write_run_privacy
from fedleak.simulator.runtime.results import (
    STATUS_OK,
    STATUSES,
    LeakageRecord,
    RunPaths,
    read_jsonl_rows,
    read_leakage,
    read_run_config,
    status_counts,
    write_csv,
)
from fedleak.simulator.runtime.setting_warnings import read_warnings

METRIC_COLUMNS = (
    "psnr_mean",
    "psnr_min",
    "psnr_init",
    "ssim",
    "lpips",
    "avd",
    "label_acc",
    "recovery",
    "time_s",
)
SUMMARY_COLUMNS = ("round", "attack", "updates", *STATUSES, *METRIC_COLUMNS)
"""Columns of :func:`summarise` (a status no version knows yet adds its own column)."""
MODALITY_COLUMNS = (
    ("discrete_acc", "discrete_accuracy"),
    ("cont_mae", "continuous_mae"),
    ("pearson", "pearson_mean"),
)
"""Columns of tables' and signals' own metrics (:mod:`fedleak.simulator.metrics.modality`): summary
column and row field; a column appears only when some row of the run has the metric."""
TEXT_HEADERS = {"not_applicable": "n/a"}
"""Shorter headers in the plain-text table, so it fits a terminal."""


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def summarise(
    records: list[LeakageRecord], lpips: Mapping[RowKey, float] | None = None
) -> list[dict[str, float | int | str]]:
    """One row per (round, attack): a count per status and mean metrics over the ``ok`` rows.

    Every status has its own column (``ok``, ``failed``, ``not_applicable``, ``timeout``,
    ``skipped``, ``rejected``), so an attack that does not apply is never read as broken.
    ``lpips`` holds LPIPS per row where it was computed (the column is NaN elsewhere).
    """
    groups: dict[tuple[int, str], list[LeakageRecord]] = defaultdict(list)
    for record in records:
        groups[(record.round, record.attack)].append(record)
    every_status = list(status_counts(records))
    extra = [
        (column, name)
        for column, name in MODALITY_COLUMNS
        if any(not math.isnan(getattr(r, name)) for r in records)
    ]
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
                "lpips": mean_lpips(dict(lpips or {}), ok),
                "avd": _nanmean([r.avd_mean for r in ok]),
                "label_acc": _nanmean([r.label_accuracy for r in ok]),
                "recovery": _nanmean([r.recovery_rate for r in ok]),
                "time_s": _nanmean([r.attack_time_s for r in group]),
                **{column: _nanmean([getattr(r, name) for r in ok]) for column, name in extra},
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


@dataclass(frozen=True)
class ReportNotes:
    """The lines below the table: budget, LPIPS, defenses that failed, start-up warnings."""

    privacy: str = ""
    lpips: str = ""
    leaks: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """Every note as printed under the table (warnings prefixed ``warning:``)."""
        lines = [line for line in (self.privacy, self.lpips) if line]
        return [*lines, *self.leaks, *(f"warning: {w}" for w in self.warnings)]


def _lpips(
    paths: RunPaths, records: list[LeakageRecord], config: dict[str, Any]
) -> tuple[dict[RowKey, float], str]:
    """LPIPS per row where the backbone weights exist, else why not (one line)."""
    if not any(r.status == STATUS_OK for r in records):
        return {}, ""
    from fedleak.simulator.metrics.lpips import LpipsUnavailableError, lpips_scorer

    report = config.get("report")
    setting = report.get("lpips_weights") if isinstance(report, dict) else None
    try:
        scorer = lpips_scorer(setting)
    except LpipsUnavailableError as exc:
        return {}, str(exc)
    return lpips_scores(paths, records, scorer), ""


def _privacy_line(paths: RunPaths) -> str:
    try:
        return write_run_privacy(paths)
    except (ConfigError, OSError, ValueError) as exc:  # the rows' files are already written
        return f"privacy budget not computed: {exc}"


def build_report(paths: RunPaths) -> str:
    """Rebuild CSVs, ``summary.txt``, image grids, plots and ``report.html``; return the text.

    The rows' files come first, so a failure while drawing loses nothing recorded; a failing
    plot or HTML page is reported on stderr and does not fail the run. The text is the
    table, then the privacy budget, the LPIPS line, defended updates that were still
    reconstructed, and the run's start-up warnings.
    """
    records = read_leakage(paths.leakage_jsonl)
    write_csv(paths.leakage_csv, [asdict(r) for r in records])
    write_csv(paths.training_csv, read_jsonl_rows(paths.training_jsonl))
    rows = summarise(records)
    paths.summary.write_text(format_table(rows) + "\n", encoding="utf-8")
    config = read_run_config(paths)
    lpips, lpips_line = _lpips(paths, records, config)
    rows = summarise(records, lpips)
    write_csv(paths.summary_csv, [dict(row) for row in rows])
    notes = ReportNotes(
        privacy=_privacy_line(paths),
        lpips=lpips_line,
        leaks=tuple(defended_leaks(config, records)),
        warnings=tuple(read_warnings(paths.root)),
    )
    text = "\n".join([format_table(rows), *notes.lines()])
    paths.summary.write_text(text + "\n", encoding="utf-8")
    for server_round in sorted({r.round for r in records}):
        write_round_gallery(paths, server_round, records)
    try:
        from fedleak.simulator.report.html_report import (
            write_html_report,  # matplotlib only when drawing
        )

        write_html_report(paths, records, rows, notes)
    except Exception as exc:  # a drawing bug must not fail a finished run
        print(f"fedleak: warning: report.html not written: {exc!r}", file=sys.stderr)
    return text
