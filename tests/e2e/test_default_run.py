"""README command 1's job: the embedded default experiment, end to end, on Flower + Ray."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulator.results import read_jsonl_rows, read_leakage

pytestmark = pytest.mark.slow

ROUNDS, CLIENTS, ATTACKS = 3, 4, ("analytic", "inverting_gradients")


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, float]:
    out = tmp_path_factory.mktemp("runs")
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "run", f"output_dir={out}"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = (out / "default").iterdir()
    return run_dir, proc.stdout, elapsed


def test_default_run_finishes_in_time_and_prints_the_table(
    default_run: tuple[Path, str, float],
) -> None:
    _, stdout, elapsed = default_run
    assert elapsed < 120, f"default run took {elapsed:.0f} s"
    for r in range(1, ROUNDS + 1):
        assert f"round {r}/{ROUNDS} | clients trained {CLIENTS}" in stdout
    assert "psnr_mean" in stdout and "inverting_gradients" in stdout


def test_every_update_attacked_and_analytic_exact(default_run: tuple[Path, str, float]) -> None:
    run_dir, _, _ = default_run
    rows = read_leakage(run_dir / "leakage.jsonl")
    keys = {(r.round, r.node_id, r.attack) for r in rows}
    assert len(rows) == len(keys) == ROUNDS * CLIENTS * len(ATTACKS)
    analytic = [r for r in rows if r.attack == "analytic"]
    assert all(r.status == "ok" for r in analytic)
    assert min(r.psnr_min for r in analytic) >= 60.0  # exact recovery (seed 000)
    assert all(r.label_accuracy == 1.0 for r in analytic)


def test_inverting_gradients_beats_its_random_initialisation(
    default_run: tuple[Path, str, float],
) -> None:
    run_dir, _, _ = default_run
    rows = [r for r in read_leakage(run_dir / "leakage.jsonl") if r.attack == "inverting_gradients"]
    assert rows and all(r.status == "ok" for r in rows)
    assert all(r.psnr_mean > r.psnr_init_mean + 3.0 for r in rows)
    mean_gain = sum(r.psnr_mean - r.psnr_init_mean for r in rows) / len(rows)
    assert mean_gain >= 10.0


def test_run_directory_holds_every_product(default_run: tuple[Path, str, float]) -> None:
    run_dir, _, _ = default_run
    assert (run_dir / "config.yaml").is_file()
    with (run_dir / "leakage.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == ROUNDS * CLIENTS * len(ATTACKS)
    training = read_jsonl_rows(run_dir / "training.jsonl")
    assert [row["round"] for row in training] == list(range(ROUNDS + 1))
    assert all(0.0 <= row["test_accuracy"] <= 1.0 for row in training)
    for r in range(1, ROUNDS + 1):
        grid = run_dir / "grids" / f"round_{r:04d}.png"
        assert grid.is_file() and grid.stat().st_size > 1000
    assert (run_dir / "summary.txt").read_text().count("analytic") == ROUNDS
