"""One leakage row per (round, node, attack), the run directory, and its files."""

from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from fedleak.attacks.types import Status

_Row = TypeVar("_Row")

STATUS_OK = Status.OK
"""Short for ``Status.OK`` (the status of a row with metrics)."""
STATUS_REJECTED = Status.REJECTED
"""A reply the server refused to aggregate (written by the attack pipeline, not an attack)."""
STATUSES: tuple[Status, ...] = tuple(Status)
"""Every status a row can carry, in the order tables show them."""
STATUS_TITLES = {"not_applicable": "not applicable"}
"""How a status reads in prose and in the HTML report (the others read as they are)."""


@dataclass(frozen=True)
class LeakageRecord:
    """The leakage of one attack on one client update.

    ``status`` is ``ok`` when the attack returned a reconstruction (metrics set), else one of
    ``failed``, ``not_applicable``, ``timeout``, ``skipped`` (the attack's outcome) or
    ``rejected`` (the server refused the reply), with ``reason`` (metrics NaN).
    ``client`` is the client's partition id from the audit store (-1 without audit): unlike
    Flower's random ``node_id`` it is the same in every run of the experiment.
    ``psnr_init_mean`` is the PSNR of an optimisation attack's random starting point: the
    baseline its ``psnr_mean`` must clearly exceed to count as leakage. ``discrete_accuracy``
    and ``continuous_mae`` (tables) and ``pearson_mean`` (signals) are the modality's own
    metrics (:mod:`fedleak.simulator.metrics.modality`), NaN for other data.
    """

    round: int
    node_id: int
    attack: str
    status: Status
    reason: str = ""
    client: int = -1
    psnr_mean: float = math.nan
    psnr_min: float = math.nan
    ssim_mean: float = math.nan
    mse_mean: float = math.nan
    avd_mean: float = math.nan
    label_accuracy: float = math.nan
    recovery_rate: float = math.nan
    recovery_rate_loose: float = math.nan
    psnr_init_mean: float = math.nan
    discrete_accuracy: float = math.nan
    continuous_mae: float = math.nan
    pearson_mean: float = math.nan
    num_samples: int = 0
    num_truth: int = 0
    num_reconstructed: int = 0
    iterations: int = 0
    attack_time_s: float = 0.0
    worker: str = ""
    device: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """One JSONL line (NaN written as null, so any JSON reader accepts it)."""
        row = {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in asdict(self).items()
        }
        return json.dumps(row, sort_keys=False)

    @classmethod
    def from_json(cls, line: str) -> LeakageRecord:
        """Inverse of :meth:`to_json`."""
        row = json.loads(line)
        names = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {
            k: (math.nan if v is None and names[k].type == "float" else v)
            for k, v in row.items()
            if k in names
        }
        if kwargs.get("status") in set(Status):  # any other status is kept as read
            kwargs["status"] = Status(kwargs["status"])
        return cls(**kwargs)


def status_counts(records: Iterable[LeakageRecord]) -> dict[str, int]:
    """Rows per status: every status of :data:`STATUSES` (0 when absent), then any other.

    A status this version does not know (a newer recorder's) keeps its own count instead
    of being folded into another.
    """
    counts = Counter(r.status for r in records)
    known = {status.value: counts.pop(status, 0) for status in STATUSES}
    return {**known, **dict(sorted(counts.items()))}


def describe_statuses(records: Iterable[LeakageRecord]) -> str:
    """``"16 (8 ok, 8 not applicable)"``: the rows and what each of them was."""
    counts = status_counts(records)
    total = sum(counts.values())
    parts = [f"{n} {STATUS_TITLES.get(s, s)}" for s, n in counts.items() if n]
    return f"{total} ({', '.join(parts)})" if parts else "0"


@dataclass(frozen=True)
class RunPaths:
    """Where a run writes everything: ``runs/<experiment>/<timestamp>/``."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def leakage_jsonl(self) -> Path:
        return self.root / "leakage.jsonl"

    @property
    def leakage_csv(self) -> Path:
        return self.root / "leakage.csv"

    @property
    def training_jsonl(self) -> Path:
        return self.root / "training.jsonl"

    @property
    def training_csv(self) -> Path:
        return self.root / "training.csv"

    @property
    def summary(self) -> Path:
        return self.root / "summary.txt"

    @property
    def summary_csv(self) -> Path:
        return self.root / "summary.csv"

    @property
    def privacy(self) -> Path:
        return self.root / "privacy.json"

    @property
    def audit(self) -> Path:
        return self.root / "audit"

    @property
    def reconstructions(self) -> Path:
        return self.root / "reconstructions"

    @property
    def updates(self) -> Path:
        return self.root / "updates"

    @property
    def grids(self) -> Path:
        return self.root / "grids"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    def plot_file(self, name: str) -> Path:
        return self.plots / f"{name}.png"

    def reconstruction_file(self, server_round: int, node_id: int, attack: str) -> Path:
        return self.reconstructions / f"round_{server_round:04d}" / f"node_{node_id}_{attack}.npz"


class JsonlAppender:
    """Append one JSON line per call, flushed and fsynced so a crash loses nothing written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("a", encoding="utf-8")

    def append(self, line: str) -> None:
        self._handle.write(line + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def _parsed_lines(
    path: Path, parse: Callable[[str], _Row], errors: tuple[type[Exception], ...]
) -> list[_Row]:
    """Every line of ``path`` that ``parse`` reads without ``errors`` (a torn one is skipped)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(parse(line))
        except errors:
            continue
    return rows


def read_leakage(path: Path) -> list[LeakageRecord]:
    """All complete rows of a ``leakage.jsonl`` (a torn last line after a crash is skipped)."""
    return _parsed_lines(path, LeakageRecord.from_json, (json.JSONDecodeError, TypeError))


def read_run_config(paths: RunPaths) -> dict[str, Any]:
    """The run's resolved ``config.yaml`` as a mapping (empty when missing or unreadable)."""
    import yaml

    try:
        loaded = yaml.safe_load(paths.config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def read_jsonl_rows(path: Path) -> list[dict[str, Any]]:
    """Plain dict rows of a JSONL file; a torn last line is skipped."""
    return _parsed_lines(path, json.loads, (json.JSONDecodeError,))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` (dicts with the same keys) as CSV; nested values as JSON."""
    if not rows:
        path.write_text("", encoding="utf-8")
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
            )
