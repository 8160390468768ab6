"""The DLG study's verdicts compare like with like, and its exit code reports a broken
measurement, never a conclusion that does not replicate."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.dlg_study import load_runs, unsettled
from benchmarks.dlg_verdicts import (
    FAILS,
    HOLDS,
    UNMEASURED,
    Run,
    activation_verdict,
    architecture_verdict,
    batch_verdict,
    order_verdict,
    paired_means,
    pruning_verdict,
    study_verdicts,
)

ROOT = Path(__file__).resolve().parents[2]
BASE = {"xavier-relu": 10.0, "kaiming-relu": 14.0, "kaiming-sigmoid": 18.0, "xavier-sigmoid": 22.0}


def _grid(model: str = "cnn", batches: tuple[int, ...] = (1, 4), prune: str = "none") -> list[Run]:
    """A grid that follows the study: PSNR falls with B, the init/activation order holds."""
    runs = []
    for key, psnr in BASE.items():
        family, activation = key.split("-")
        for b in batches:
            for seed in range(2):
                drop = (2.0 if family == "xavier" else 0.5) if prune != "none" else 0.0
                runs.append(
                    Run(model, f"{family}_uniform", activation, b, prune, seed, psnr - b - drop)
                )
    return runs


def test_a_grid_that_follows_the_study_holds_every_measured_conclusion() -> None:
    runs = _grid() + _grid(prune="0.2")
    verdicts = {claim: status for claim, status, _ in study_verdicts(runs)}
    assert verdicts["PSNR falls as the batch size rises"] == HOLDS
    assert verdicts["Xavier-ReLU < Kaiming-ReLU < Kaiming-Sigmoid < Xavier-Sigmoid (CNN)"] == HOLDS
    assert verdicts["ReLU below Sigmoid"] == HOLDS
    assert verdicts["pruning costs Xavier more PSNR than Kaiming"] == HOLDS
    assert verdicts["McMahan CNN below ResNet-18 (Xavier, ReLU)"] == UNMEASURED  # no resnet18
    assert verdicts["uniform vs normal init: within 3 dB"] == UNMEASURED  # no normal init


def test_unpaired_runs_do_not_bias_a_comparison() -> None:
    """A ResNet-18 subset at B=1 only is compared with the CNN's B=1 runs, not all of them."""
    cnn = _grid(batches=(1, 16))
    resnet = [Run("resnet18", "xavier_uniform", "relu", 1, "none", s, 8.0) for s in range(2)]
    claim, status, detail = architecture_verdict(cnn + resnet)
    # CNN xavier-relu: 9.0 at B=1, -6.0 at B=16; the unpaired mean (1.5) would say 'holds'
    assert status == FAILS
    assert detail == "CNN 9.0 vs ResNet-18 8.0 (2 runs each)"
    assert claim.startswith("McMahan CNN below ResNet-18")


def test_paired_means_keep_only_shared_cells_and_skip_nan() -> None:
    runs = [
        Run("cnn", "xavier_uniform", "relu", 1, "none", 0, 10.0),
        Run("cnn", "xavier_uniform", "sigmoid", 1, "none", 0, 20.0),
        Run("cnn", "xavier_uniform", "relu", 4, "none", 0, 0.0),  # no sigmoid partner
        Run("cnn", "xavier_uniform", "sigmoid", 1, "none", 1, math.nan),
        Run("cnn", "xavier_uniform", "relu", 1, "none", 1, 5.0),  # its partner failed
    ]
    means, cells = paired_means(runs, lambda r: r.activation, ["relu", "sigmoid"], {"activation"})
    assert (means, cells) == ([10.0, 20.0], 1)


def test_batch_steps_are_paired_separately() -> None:
    """B=16 measured for one init only still checks 4 -> 16 on that init, 1 -> 4 on all."""
    runs = _grid(batches=(1, 4)) + [
        Run("cnn", "xavier_uniform", "relu", 16, "none", s, 1.0) for s in range(2)
    ]
    _, status, detail = batch_verdict(runs)
    assert status == HOLDS
    assert detail == "B=1: 15.0 -> B=4: 12.0 (8 pairs); B=4: 6.0 -> B=16: 1.0 (2 pairs)"


def test_a_reversed_result_is_reported_as_not_holding() -> None:
    reversed_runs = [
        Run(r.model, r.init, r.activation, r.batch, r.prune, r.seed, -r.psnr) for r in _grid()
    ]
    for check in (batch_verdict, order_verdict, activation_verdict):
        assert check(reversed_runs)[1] == FAILS
    assert pruning_verdict(reversed_runs)[1] == UNMEASURED


def _job(
    sweep: Path, index: int, status: str, rows: list[dict[str, object]], seed: int = 0
) -> None:
    job_dir = sweep / f"job-{index:03d}"
    run_dir = job_dir / "run"
    run_dir.mkdir(parents=True)
    overrides = ["model=cnn", "model.init=xavier_uniform", "model.activation=relu"]
    record = {"status": status, "run_dir": f"job-{index:03d}/run", "seed": seed}
    (job_dir / "job.json").write_text(json.dumps({**record, "overrides": overrides}))
    (run_dir / "leakage.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_load_runs_names_every_broken_job(tmp_path: Path) -> None:
    ok = {"status": "ok", "psnr_mean": 21.5, "reason": ""}
    failed = {"status": "failed", "psnr_mean": None, "reason": "RuntimeError: boom"}
    _job(tmp_path, 0, "ok", [ok])
    _job(tmp_path, 1, "ok", [failed])
    _job(tmp_path, 2, "failed", [])
    _job(tmp_path, 3, "interrupted", [])
    runs, problems, interrupted = load_runs(tmp_path)
    assert [r.psnr for r in runs[:1]] == [21.5] and math.isnan(runs[1].psnr)
    name = tmp_path.name
    assert [message for message, _ in problems] == [
        f"{name}/job-001: no PSNR (failed: RuntimeError: boom)",
        f"{name}/job-002: job status 'failed'",
    ]
    assert interrupted == [f"{name}/job-003"]  # a stopped sweep: not run, not broken


def test_a_failed_job_run_again_ok_leaves_the_measurement_whole(tmp_path: Path) -> None:
    first, second = tmp_path / "sweep-a", tmp_path / "sweep-b"
    _job(first, 0, "failed", [])
    _job(second, 0, "ok", [{"status": "ok", "psnr_mean": 20.0, "reason": ""}])
    runs, problems, _ = load_runs(first)
    again, _, _ = load_runs(second)
    assert unsettled(runs + again, problems) == ([], ["sweep-a/job-000: job status 'failed'"])
    assert unsettled(runs, problems) == (["sweep-a/job-000: job status 'failed'"], [])


@pytest.mark.parametrize(("broken", "code"), [(False, 0), (True, 1)])
def test_exit_code_reports_a_broken_measurement_not_a_finding(
    tmp_path: Path, broken: bool, code: int
) -> None:
    ok = {"status": "ok", "psnr_mean": 21.5, "reason": ""}
    _job(tmp_path, 0, "ok", [ok])
    if broken:
        _job(tmp_path, 1, "failed", [], seed=1)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dlg_study.py"), "--sweep-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "not measured: PSNR falls as the batch size rises" in proc.stdout
    expected = f"measurement broken: {tmp_path.name}/job-001: job status 'failed'"
    assert (expected in proc.stdout) == broken
