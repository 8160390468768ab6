"""mixing_utility reads a part-1 sweep: finished runs with accuracy and recovery, and every job
that makes the measurement incomplete, by name."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.mixing_utility import load_federation_runs
from benchmarks.sweep_problems import split_settled


def _job(
    sweep: Path, index: int, status: str, leakage: list[dict[str, object]], seed: int = 0
) -> None:
    job_dir = sweep / f"job-{index:03d}"
    run_dir = job_dir / "run"
    run_dir.mkdir(parents=True)
    overrides = ["defense=equal_labels", "federation.batch_size=4"]
    record = {"status": status, "run_dir": f"job-{index:03d}/run", "seed": seed}
    (job_dir / "job.json").write_text(json.dumps({**record, "overrides": overrides}))
    training = [{"round": 0, "test_accuracy": 0.1}, {"round": 60, "test_accuracy": 0.9}]
    (run_dir / "training.jsonl").write_text("".join(json.dumps(r) + "\n" for r in training))
    (run_dir / "leakage.jsonl").write_text("".join(json.dumps(r) + "\n" for r in leakage))


def test_best_attack_per_update_and_broken_jobs_named(tmp_path: Path) -> None:
    rows = [
        {"round": 1, "node_id": 5, "status": "ok", "recovery_rate": 0.25},
        {"round": 1, "node_id": 5, "status": "ok", "recovery_rate": 0.75},  # best of the update
        {"round": 1, "node_id": 6, "status": "failed", "recovery_rate": None},  # recovers 0
    ]
    _job(tmp_path, 0, "ok", rows)
    _job(tmp_path, 1, "ok", [])
    _job(tmp_path, 2, "failed", [])
    runs, problems = load_federation_runs(tmp_path)
    assert [(r.strategy, r.batch, r.accuracy, r.recovery) for r in runs] == [
        ("CE equal", 4, 0.9, 0.375)
    ]  # a run without an attacked update measures nothing: a problem, not a row
    name = tmp_path.name
    assert [message for message, _ in problems] == [
        f"{name}/job-001: no attacked update",
        f"{name}/job-002: job status 'failed'",
    ]


def test_a_failed_job_run_again_ok_in_a_later_sweep_settles_it(tmp_path: Path) -> None:
    rows = [{"round": 1, "node_id": 5, "status": "ok", "recovery_rate": 1.0}]
    first, again = tmp_path / "sweep-a", tmp_path / "sweep-b"
    _job(first, 0, "ok", rows, seed=0)
    _job(first, 1, "failed", [], seed=1)
    _job(first, 2, "failed", [], seed=2)
    _job(again, 0, "ok", rows, seed=1)  # seed 1 again, ok; seed 2 never ran again
    runs, problems = load_federation_runs(first)
    rerun, more = load_federation_runs(again)
    finished = [(r.strategy, r.batch, r.seed) for r in runs + rerun]
    assert split_settled(problems + more, finished) == (
        ["sweep-a/job-002: job status 'failed'"],
        ["sweep-a/job-001: job status 'failed'"],
    )
