"""Same config and seed, same results; a run killed mid-way and resumed equals one that was not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from fedleak.simulator.runtime.checkpoint import load_checkpoint
from fedleak.simulator.runtime.results import LeakageRecord, read_leakage

pytestmark = pytest.mark.slow

ROUNDS = 5
ARGS = [
    f"federation.rounds={ROUNDS}",
    "federation.num_clients=4",
    "attack=analytic_ig",
    "attack.params.inverting_gradients.iterations=100",
]
VOLATILE = {"node_id", "attack_time_s", "worker"}  # Flower's random ids, timings


def _fedleak(*args: str, **popen: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "fedleak.simulator.cli", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **popen,
    )


def _run(out: Path) -> Path:
    proc = _fedleak("run", f"output_dir={out}", *ARGS)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    (run_dir,) = (c.parent for c in out.glob("*/*/config.yaml"))  # named by its settings
    return run_dir


def _comparable(rows: list[LeakageRecord]) -> dict[tuple[int, int, str], dict[str, Any]]:
    table = {}
    for row in rows:
        values = {k: v for k, v in vars(row).items() if k not in VOLATILE}
        table[(row.round, row.client, row.attack)] = values
    return table


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("reference"))


def test_same_seed_gives_identical_rows_and_model(reference_run: Path, tmp_path: Path) -> None:
    again = _run(tmp_path)
    first, second = (
        read_leakage(reference_run / "leakage.jsonl"),
        read_leakage(again / "leakage.jsonl"),
    )
    assert len(first) == ROUNDS * 4 * 2
    assert all(row.client >= 0 for row in first)
    assert _comparable(first) == _comparable(second)
    for name, value in torch.load(reference_run / "final_model.pt").items():
        assert torch.equal(value, torch.load(again / "final_model.pt")[name]), name


def test_killed_run_resumes_to_the_uninterrupted_result(
    reference_run: Path, tmp_path: Path
) -> None:
    proc = _fedleak("run", f"output_dir={tmp_path}", *ARGS, start_new_session=True)
    run_dir = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            found = list(tmp_path.glob("*/*"))  # the run is named by its settings
            checkpoint = load_checkpoint(found[0]) if found else None
            if checkpoint is not None and checkpoint.server_round >= 2:
                run_dir = found[0]
                break
            time.sleep(0.05)
        assert run_dir is not None, "the run never checkpointed round 2"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # kill -9 of the whole run: driver, Ray, actors
        proc.wait()
    killed_at = load_checkpoint(run_dir)
    assert killed_at is not None and killed_at.server_round < ROUNDS
    assert not (run_dir / "final_model.pt").exists()

    resumed = _fedleak("run", "--resume", str(run_dir))
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output[-3000:]
    assert f"resuming {run_dir} at round {killed_at.server_round + 1}" in output

    rows = read_leakage(run_dir / "leakage.jsonl")
    keys = [(r.round, r.node_id, r.attack) for r in rows]
    assert len(keys) == len(set(keys)) == ROUNDS * 4 * 2  # exactly one row each
    assert _comparable(rows) == _comparable(read_leakage(reference_run / "leakage.jsonl"))
    reference = torch.load(reference_run / "final_model.pt")
    for name, value in torch.load(run_dir / "final_model.pt").items():
        assert torch.equal(value, reference[name]), name
    training = (run_dir / "training.jsonl").read_text().splitlines()
    assert len(training) == ROUNDS + 1  # round 0 .. ROUNDS, none twice
