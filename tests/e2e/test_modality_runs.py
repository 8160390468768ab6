"""Whole runs on a table and on signals: exact recovery, measured in the modality's metrics.

- ``dataset=fair model=fcnn attack=spear federation.batch_size=8``: SPEAR (Dimitrov et al.,
  NeurIPS 2024) recovers every row of every update, so every category is right (discrete
  accuracy 1.0) and continuous features are off by float32 noise only.
- ``dataset=gunpoint model=mlp attack=analytic``: the analytic attack (Phong et al. 2018)
  recovers every single-sample update's series exactly (PSNR over the series' range).

Both reports render their gallery: decoded true/recovered rows, overlaid series.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedleak.simulator.data.domain import DataDomain
from fedleak.simulator.runtime.results import read_leakage
from tests.e2e.cli_run import run_fedleak

pytestmark = pytest.mark.slow

SMALL = ["federation.num_clients=3", "federation.rounds=2", "pool=inprocess"]
"""Few clients and rounds keep each run short; what is tested does not depend on them."""
EXACT_DB = 60.0


def _run(out: Path, *overrides: str) -> Path:
    return run_fedleak(out, *overrides, *SMALL, timeout=300)[1]


@pytest.fixture(scope="module")
def fair_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fair")
    return _run(out, "dataset=fair", "model=fcnn", "attack=spear", "federation.batch_size=8")


@pytest.fixture(scope="module")
def gunpoint_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("gunpoint"), "dataset=gunpoint", "model=mlp")


def _gallery(run_dir: Path) -> str:
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    match = re.search(r'<section id="gallery">(.*?)</section>', html, re.S)
    assert match, "the report has no gallery section"
    return match.group(1)


def test_spear_on_fair_recovers_every_category_of_every_update(fair_run: Path) -> None:
    rows = read_leakage(fair_run / "leakage.jsonl")
    assert len(rows) == 3 * 2 and all(r.status == "ok" for r in rows)
    assert all(r.num_truth == 8 == r.num_reconstructed for r in rows)
    assert [r.discrete_accuracy for r in rows] == [1.0] * len(rows)
    assert max(r.continuous_mae for r in rows) < 0.01  # years and children, float32 noise
    assert all(r.label_accuracy == 1.0 for r in rows)
    assert "discrete_acc" in (fair_run / "summary.txt").read_text()


def test_fair_report_shows_decoded_rows(fair_run: Path) -> None:
    domain = DataDomain.read(fair_run)
    assert domain.modality == "tabular" and domain.encoder is not None
    assert "rate_marriage" in [f.name for f in domain.encoder.features]
    for r in (1, 2):
        grid = fair_run / "grids" / f"round_{r:04d}.png"
        assert grid.is_file() and grid.stat().st_size > 5000
    assert _gallery(fair_run).count("data:image/png;base64,") == 2


def test_analytic_on_gunpoint_recovers_every_series_exactly(gunpoint_run: Path) -> None:
    rows = read_leakage(gunpoint_run / "leakage.jsonl")
    assert len(rows) == 3 * 2 and all(r.status == "ok" for r in rows)
    assert {r.attack for r in rows} == {"analytic"}
    assert min(r.psnr_min for r in rows) >= EXACT_DB  # over each series' own range
    assert min(r.pearson_mean for r in rows) > 0.999999
    assert all(r.label_accuracy == 1.0 for r in rows)


def test_gunpoint_report_overlays_the_series(gunpoint_run: Path) -> None:
    assert DataDomain.read(gunpoint_run).modality == "signal"
    for r in (1, 2):
        assert (gunpoint_run / "grids" / f"round_{r:04d}.png").stat().st_size > 5000
    assert _gallery(gunpoint_run).count("data:image/png;base64,") == 2
