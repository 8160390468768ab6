"""The summary of a sweep, rebuilt from its job directories: CSV, table and plot.

Leakage of a run is the mean PSNR of its best attack: the attack with the highest mean PSNR
over the run's ``ok`` rows; its recovery rate is reported beside it. A setting is a
combination's overrides minus ``seed``; its row holds mean and standard deviation (sample,
``ddof=1``) over the seeds whose run finished.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedleak.simulator.config.schema import ExperimentConfig
from fedleak.simulator.runtime.results import (
    STATUS_OK,
    LeakageRecord,
    RunPaths,
    read_jsonl_rows,
    read_leakage,
)
from fedleak.simulator.runtime.results import write_csv as write_rows_csv

SWEEP_CSV = "sweep.csv"
SUMMARY_TXT = "sweep_summary.txt"
SUMMARY_PNG = "sweep_summary.png"


def dp_epsilon(cfg: ExperimentConfig) -> float | None:
    """A client's epsilon after all rounds when local DP is on (worst case), else ``None``."""
    if not cfg.defense.dp.enabled:
        return None
    from fedleak.simulator.runtime.privacy import local_dp_budget

    with warnings.catch_warnings():  # Opacus: "optimal order is the smallest alpha" at tiny noise
        warnings.simplefilter("ignore")
        return local_dp_budget(cfg.defense.dp, cfg.federation.rounds).epsilon


def best_attack(records: list[LeakageRecord]) -> tuple[str, float, float] | None:
    """(attack, mean PSNR, mean recovery rate) of the attack with the highest mean PSNR."""
    by_attack: dict[str, list[LeakageRecord]] = defaultdict(list)
    for record in records:
        if record.status == STATUS_OK and not math.isnan(record.psnr_mean):
            by_attack[record.attack].append(record)
    if not by_attack:
        return None
    scores = {
        name: (
            float(np.mean([r.psnr_mean for r in rows])),
            _nanmean([r.recovery_rate for r in rows]),
        )
        for name, rows in by_attack.items()
    }
    name = max(sorted(scores), key=lambda n: scores[n][0])
    return name, *scores[name]


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _final_accuracy(path: Path) -> float:
    rows = [r for r in read_jsonl_rows(path) if r.get("test_accuracy") is not None]
    return float(max(rows, key=lambda r: r["round"])["test_accuracy"]) if rows else math.nan


@dataclass(frozen=True)
class RunResult:
    """One row of ``sweep.csv``: a job of the sweep and what its run measured."""

    job: int
    overrides: str
    setting: str
    seed: int
    status: str
    exit_code: int | None
    test_accuracy: float
    best_attack: str
    leakage_psnr: float
    recovery_rate: float
    epsilon: float | None
    run_dir: str


def _load_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    files = sorted(sweep_dir.glob("job-*/job.json"))
    return [json.loads(f.read_text(encoding="utf-8")) for f in files]


def common_overrides(jobs: list[dict[str, Any]]) -> list[str]:
    """Overrides in every job's setting: left out of the labels when settings differ."""
    settings = [list(job["setting"]) for job in jobs]
    if len({tuple(s) for s in settings}) < 2:
        return []
    return [o for o in settings[0] if all(o in s for s in settings[1:])]


def load_results(sweep_dir: Path) -> list[RunResult]:
    """One :class:`RunResult` per ``job-NNN/job.json``, from whatever its run left.

    ``setting`` names a setting by the overrides that differ between settings.
    """
    jobs = _load_jobs(sweep_dir)
    common = common_overrides(jobs)
    results = []
    for job in jobs:
        run_dir = job.get("run_dir")
        paths = RunPaths(sweep_dir / run_dir) if run_dir else None
        best = best_attack(read_leakage(paths.leakage_jsonl)) if paths else None
        results.append(
            RunResult(
                job=int(job["index"]),
                overrides=" ".join(job["overrides"]),
                setting=" ".join(o for o in job["setting"] if o not in common) or "(defaults)",
                seed=int(job["seed"]),
                status=str(job["status"]),
                exit_code=job.get("exit_code"),
                test_accuracy=_final_accuracy(paths.training_jsonl) if paths else math.nan,
                best_attack=best[0] if best else "",
                leakage_psnr=best[1] if best else math.nan,
                recovery_rate=best[2] if best else math.nan,
                epsilon=job.get("epsilon"),
                run_dir=run_dir or "",
            )
        )
    return results


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite ``values`` (std 0 for one value)."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    return float(np.mean(finite)), std


@dataclass(frozen=True)
class SettingSummary:
    """One row of ``sweep_summary.txt``: a setting over its seeds."""

    setting: str
    seeds: int
    failed: int
    epsilon: float | None
    test_accuracy: tuple[float, float]
    leakage_psnr: tuple[float, float]
    recovery_rate: tuple[float, float]
    best_attack: str


def aggregate(results: list[RunResult]) -> list[SettingSummary]:
    """One summary per setting, in the order settings first appear; only ``ok`` runs count."""
    groups: dict[str, list[RunResult]] = defaultdict(list)
    for result in results:
        groups[result.setting].append(result)
    rows = []
    for setting, group in groups.items():
        ok = [r for r in group if r.status == "ok"]
        attacks = sorted({r.best_attack for r in ok if r.best_attack})
        rows.append(
            SettingSummary(
                setting=setting,
                seeds=len(ok),
                failed=len(group) - len(ok),
                epsilon=group[0].epsilon,
                test_accuracy=mean_std([r.test_accuracy for r in ok]),
                leakage_psnr=mean_std([r.leakage_psnr for r in ok]),
                recovery_rate=mean_std([r.recovery_rate for r in ok]),
                best_attack="/".join(attacks) or "-",
            )
        )
    return rows


def _pm(value: tuple[float, float], digits: int) -> str:
    mean, std = value
    return "-" if math.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _eps(epsilon: float | None) -> str:
    return "-" if epsilon is None else f"{epsilon:.3g}"


def format_summary(rows: list[SettingSummary]) -> str:
    """Plain-text table of :func:`aggregate` rows."""
    header = ["setting", "seeds", "failed", "epsilon", "test_acc", "leakage_psnr", "recovery"]
    header.append("best_attack")
    body = [
        [
            r.setting,
            str(r.seeds),
            str(r.failed),
            _eps(r.epsilon),
            _pm(r.test_accuracy, 3),
            _pm(r.leakage_psnr, 1),
            _pm(r.recovery_rate, 2),
            r.best_attack,
        ]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in [header, *body]
    ]
    return "\n".join(lines)


def _notes(sweep_dir: Path, results: list[RunResult]) -> list[str]:
    common = common_overrides(_load_jobs(sweep_dir))
    notes = [f"every setting: {' '.join(common)}"] if common else []
    notes += [
        f"{r.status}: job-{r.job:03d} [{r.overrides}]"
        + ("" if r.exit_code is None else f" exit {r.exit_code}")
        + f" (log: {sweep_dir / f'job-{r.job:03d}' / 'run.log'})"
        for r in results
        if r.status != "ok"
    ]
    sweep_file = sweep_dir / "sweep.json"
    if sweep_file.is_file():
        for drop in json.loads(sweep_file.read_text(encoding="utf-8")).get("dropped", []):
            notes.append(
                f"skipped [{' '.join(drop['overrides'])}]: same experiment as "
                f"job-{drop['same_as_job']:03d} (settings of disabled defenses do not matter)"
            )
    return notes


def plot_summary(rows: list[SettingSummary], path: Path) -> None:
    """Leakage against test accuracy, one labelled point per setting, error bars over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for number, row in enumerate(rows, start=1):
        (acc, acc_std), (psnr, psnr_std) = row.test_accuracy, row.leakage_psnr
        if math.isnan(acc) or math.isnan(psnr):
            continue
        label = row.setting + ("" if row.epsilon is None else f" (eps {row.epsilon:.3g})")
        ax.errorbar(
            acc, psnr, xerr=acc_std, yerr=psnr_std, fmt="o", capsize=3, label=f"{number}: {label}"
        )
        ax.annotate(str(number), (acc, psnr), textcoords="offset points", xytext=(4, 4))
    if ax.has_data():
        ax.legend(fontsize=7, loc="best", framealpha=0.8)
    ax.set_xlabel("final test accuracy (mean ± std over seeds)")
    ax.set_ylabel("leakage: best attack's mean PSNR, dB")
    ax.set_title("fedleak sweep: leakage vs utility")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_sweep_report(sweep_dir: Path) -> str:
    """Write ``sweep.csv``, ``sweep_summary.txt`` and ``sweep_summary.png``; return the text.

    The files with the numbers come first; a failing plot is reported on stderr only.
    """
    results = load_results(sweep_dir)
    write_rows_csv(sweep_dir / SWEEP_CSV, [_csv_row(r) for r in results])
    rows = aggregate(results)
    text = "\n".join([format_summary(rows), *_notes(sweep_dir, results)])
    (sweep_dir / SUMMARY_TXT).write_text(text + "\n", encoding="utf-8")
    try:
        plot_summary(rows, sweep_dir / SUMMARY_PNG)
    except Exception as exc:  # a drawing bug must not lose the table
        print(f"fedleak: warning: {SUMMARY_PNG} not written: {exc!r}", file=sys.stderr)
    return text


def _csv_row(result: RunResult) -> dict[str, Any]:
    row = asdict(result)
    return {k: ("" if v is None else v) for k, v in row.items()}
