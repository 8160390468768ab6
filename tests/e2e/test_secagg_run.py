"""`fedleak run defense=secagg` on Flower's simulation: only each round's aggregate is attacked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedleak.simulator import record_keys as keys
from fedleak.simulator.runtime.results import read_leakage

pytestmark = pytest.mark.slow

ROUNDS, CLIENTS, BATCH = 2, 3, 2


def test_secagg_run_records_attacks_on_the_aggregate_only(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedleak.simulator.cli",
            "run",
            "defense=secagg",
            f"federation.rounds={ROUNDS}",
            f"federation.num_clients={CLIENTS}",
            f"federation.batch_size={BATCH}",
            "attack=spear",
            f"output_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for r in range(1, ROUNDS + 1):
        assert f"round {r}/{ROUNDS} | clients trained {CLIENTS} (secure aggregate)" in proc.stdout
    (run_dir,) = (c.parent for c in tmp_path.glob("*/*/config.yaml"))  # named by its settings
    rows = read_leakage(run_dir / "leakage.jsonl")
    assert [(r.round, r.node_id, r.client) for r in rows] == [
        (r, keys.AGGREGATE_NODE_ID, -1) for r in range(1, ROUNDS + 1)
    ]
    assert all(r.details["target"] == f"secure aggregate of {CLIENTS} clients" for r in rows)
    assert all(r.status in {"ok", "failed", "not_applicable"} for r in rows)
    measured = [r for r in rows if r.status == "ok"]
    assert measured, [r.reason for r in rows]
    assert all(r.num_truth == CLIENTS * BATCH for r in measured)  # the union of the batches
    leaked = any(r.recovery_rate >= 0.5 for r in measured)
    said = f"did not protect the data: the aggregate of {CLIENTS} clients was reconstructed"
    assert (said in proc.stdout) == leaked, proc.stdout[-3000:]  # said when, and only when
    assert (run_dir / "final_model.pt").is_file()
    assert (run_dir / "audit" / "round_0001" / f"node_{keys.AGGREGATE_NODE_ID}.npz").is_file()
