"""A tiny real sweep: 2 settings x 2 seeds of one round, each a whole federation."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.sweep_summary import SUMMARY_PNG, SUMMARY_TXT, SWEEP_CSV

pytestmark = pytest.mark.slow


def test_multirun_writes_one_run_per_combination_and_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = [
        f"output_dir={tmp_path}",
        "defense=none,dp",
        "defense.dp.noise=0.1",
        "seed=0,1",
        "federation.rounds=1",
        "federation.num_clients=2",
        "attack=analytic",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "run", "-m", *overrides],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sweep_dir,) = tmp_path.glob("*/sweep-*")  # named after its first job
    assert "leakage_psnr" in proc.stdout and "defense=dp defense.dp.noise=0.1" in proc.stdout

    with (sweep_dir / SWEEP_CSV).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["setting"], r["seed"], r["status"]) for r in rows] == [
        ("defense=none", "0", "ok"),
        ("defense=none", "1", "ok"),
        ("defense=dp defense.dp.noise=0.1", "0", "ok"),
        ("defense=dp defense.dp.noise=0.1", "1", "ok"),
    ]
    for row in rows:
        assert (sweep_dir / row["run_dir"] / "leakage.jsonl").is_file()
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0
        assert row["best_attack"] == "analytic"
    none_psnr = [float(r["leakage_psnr"]) for r in rows[:2]]
    dp_psnr = [float(r["leakage_psnr"]) for r in rows[2:]]
    assert min(none_psnr) >= 60.0 > max(dp_psnr)  # exact without DP, destroyed with it
    assert [r["epsilon"] for r in rows[:2]] == ["", ""]
    assert all(float(r["epsilon"]) > 0 for r in rows[2:])

    text = (sweep_dir / SUMMARY_TXT).read_text()
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["setting", "seeds", "failed", "epsilon"]
    assert lines[1].startswith("defense=none ") and lines[2].startswith("defense=dp ")
    assert (sweep_dir / SUMMARY_PNG).stat().st_size > 1000

    (sweep_dir / SUMMARY_TXT).unlink()
    capsys.readouterr()
    assert main(["sweep-report", str(sweep_dir)]) == 0
    assert capsys.readouterr().out == text
