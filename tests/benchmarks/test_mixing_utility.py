"""mixing_utility reads a part-1 sweep: finished runs with accuracy and recovery, and every job
that makes the measurement incomplete, by name."""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks.mixing_utility import load_federation_runs


def _job(sweep: Path, index: int, status: str, leakage: list[dict[str, object]]) -> None:
    job_dir = sweep / f"job-{index:03d}"
    run_dir = job_dir / "run"
    run_dir.mkdir(parents=True)
    overrides = ["defense=equal_labels", "federation.batch_size=4"]
    record = {"status": status, "run_dir": f"job-{index:03d}/run", "seed": 0}
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
    assert [(r.strategy, r.batch, r.accuracy) for r in runs] == [("CE equal", 4, 0.9)] * 2
    assert runs[0].recovery == 0.375 and math.isnan(runs[1].recovery)
    assert problems == ["job-001: no attacked update", "job-002: job status 'failed'"]
