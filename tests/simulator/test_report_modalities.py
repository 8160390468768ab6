"""Round galleries per modality, drawn from a run directory without a federation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedleak.simulator.data.domain import DataDomain
from fedleak.simulator.data.tabular import fit_encoder
from fedleak.simulator.report.modalities import round_samples, table_rows, write_round_gallery
from fedleak.simulator.runtime.audit import AuditStore, GroundTruth
from fedleak.simulator.runtime.results import LeakageRecord, RunPaths

COLUMNS = {"colour": ["red", "blue", "green"], "age": [20.0, 30.0, 40.0]}
ENCODER = fit_encoder(COLUMNS, ["colour"], ["age"])


def _run(tmp_path: Path, truth: np.ndarray, recon: np.ndarray, domain: DataDomain) -> RunPaths:
    paths = RunPaths(tmp_path)
    domain.write(paths.root)
    labels = np.zeros(len(truth), dtype=np.int64)
    AuditStore(paths.audit).write(1, 5, GroundTruth(truth, labels, partition_id=2))
    target = paths.reconstruction_file(1, 5, "spear")
    target.parent.mkdir(parents=True)
    np.savez(target, inputs=recon, labels=labels)
    return paths


def _rows() -> list[LeakageRecord]:
    return [LeakageRecord(1, 5, "spear", "ok", client=2)]


def test_tabular_gallery_decodes_rows_and_flags_wrong_categories(tmp_path: Path) -> None:
    truth = ENCODER.encode(COLUMNS)
    recon = truth[::-1].copy()  # shuffled: the gallery matches rows first
    recon[1, :3] = [0.0, 0.0, 1.0]  # blue (row 1 of the truth) recovered as red
    paths = _run(tmp_path, truth, recon, DataDomain("tabular", ENCODER))
    samples, attacks = round_samples(paths, 1, _rows(), limit=6)
    cells, wrong = table_rows(samples, attacks, ENCODER)
    assert [c[:2] for c in cells[:2]] == [["truth (client 2)", "red"], ["spear", "red"]]
    assert cells[0][2] == "20.00" and cells[1][2] == "20.00"
    assert wrong[3] == [False, True, False]  # blue recovered as red, age right
    grid = write_round_gallery(paths, 1, _rows())
    assert grid == paths.grids / "round_0001.png" and grid.stat().st_size > 5000


def test_signal_gallery_overlays_series(tmp_path: Path) -> None:
    truth = np.sin(np.linspace(0, 6, 150))[None].repeat(2, 0) * np.array([[1.0], [2.0]])
    paths = _run(tmp_path, truth, truth + 0.01, DataDomain("signal"))
    grid = write_round_gallery(paths, 1, _rows())
    assert grid is not None and grid.stat().st_size > 5000


def test_image_runs_keep_the_image_grid(tmp_path: Path) -> None:
    truth = np.random.default_rng(0).random((2, 1, 8, 8))
    paths = _run(tmp_path, truth, truth, DataDomain())
    assert write_round_gallery(paths, 1, _rows()) == paths.grids / "round_0001.png"


def test_erroneous_unknown_modality_names_the_drawers(tmp_path: Path) -> None:
    paths = _run(tmp_path, np.zeros((1, 4)), np.zeros((1, 4)), DataDomain("audio"))
    with pytest.raises(ValueError, match=r"unknown gallery drawer 'audio'.*'signal'"):
        write_round_gallery(paths, 1, _rows())


def test_domain_file_round_trip_and_default(tmp_path: Path) -> None:
    DataDomain("tabular", ENCODER).write(tmp_path)
    assert DataDomain.read(tmp_path) == DataDomain("tabular", ENCODER)
    assert DataDomain.read(tmp_path / "older-run") == DataDomain()
