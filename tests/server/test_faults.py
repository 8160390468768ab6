"""Faults never lose rows: killed workers, raising attacks, a run killed mid-round."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.serverapp.strategy import FedAvg

from fedleak.attacks import Attack, register_attack
from fedleak.attacks.registry import available_attacks
from fedleak.attacks.types import Reconstruction
from fedleak.clients.app import app as client_app
from fedleak.server.pipeline import AttackPipeline, AttackPlan
from fedleak.server.pool import create_pool
from fedleak.server.recorder import LeakageRecorder
from fedleak.server.strategy import CuriousStrategy
from fedleak.simulator.config.schema import ExperimentConfig, PoolConfig
from fedleak.simulator.runtime.audit import AuditStore
from fedleak.simulator.runtime.results import RunPaths, read_leakage
from tests.flower_harness import LocalGrid
from tests.server.conftest import initial_arrays, model_spec, train_config


class _SleepyAttack(Attack):
    """Takes a while, so a worker can be killed while it runs."""

    name = "test_sleepy"

    def reconstruct(self, model, update, *, device, seed) -> Reconstruction:  # type: ignore[no-untyped-def]
        time.sleep(0.6)
        shape = (update.hyperparams.batch_size, *update.input_shape)
        return Reconstruction(np.full(shape, 0.5, np.float32), np.zeros(shape[0], np.int64))


class _ExplodingAttack(Attack):
    name = "test_raises"

    def reconstruct(self, model, update, *, device, seed) -> Reconstruction:  # type: ignore[no-untyped-def]
        raise ValueError("singular matrix on purpose")


for _cls in (_SleepyAttack, _ExplodingAttack):
    if _cls.name not in available_attacks():
        register_attack(_cls.name, _cls)


def _federation(
    cfg: ExperimentConfig,
    paths: RunPaths,
    names: list[str],
    params: dict[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, np.ndarray], AttackPipeline]:
    audit = AuditStore(paths.audit)
    recorder = LeakageRecorder(paths, audit)
    plan = AttackPlan(names, params or {}, 0, "cpu")
    pipeline = AttackPipeline(create_pool(cfg.pool), recorder, plan, model_spec(cfg), audit)
    random.seed(0)
    result = CuriousStrategy(FedAvg(fraction_evaluate=0.0), pipeline).start(
        LocalGrid(client_app, cfg.federation.num_clients),
        initial_arrays(cfg),
        num_rounds=3,
        train_config=train_config(cfg, paths.audit),
    )
    pipeline.finish(120)
    recorder.close()
    return {k: v.numpy() for k, v in result.arrays.items()}, pipeline


@pytest.fixture
def ray_session() -> Any:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_sigkilled_worker_is_replaced_and_its_attack_retried(
    experiment: ExperimentConfig, tmp_path: Path, ray_session: Any
) -> None:
    cfg = replace(experiment, pool=PoolConfig(backend="ray", workers=1, max_retries=1))
    paths = RunPaths(tmp_path / "run")
    killed: list[int] = []

    def kill_a_worker_mid_run() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(read_leakage(paths.leakage_jsonl)) < 2:
            time.sleep(0.05)
        pool = pipeline_box[0].pool
        pid = pool.worker_pids()[0]  # type: ignore[attr-defined]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    pipeline_box: list[AttackPipeline] = []
    original_init = AttackPipeline.__init__

    def remember(self: AttackPipeline, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        pipeline_box.append(self)

    AttackPipeline.__init__ = remember  # type: ignore[method-assign]
    try:
        killer = threading.Thread(target=kill_a_worker_mid_run)
        killer.start()
        # Ray workers know only fedleak's own attacks: a long inverting_gradients is the
        # attack that is running when its worker is killed
        slow = {"inverting_gradients": {"iterations": 400}}
        _, pipeline = _federation(cfg, paths, ["inverting_gradients", "analytic"], slow)
        killer.join()
    finally:
        AttackPipeline.__init__ = original_init  # type: ignore[method-assign]

    assert killed, "the worker was never killed"
    assert pipeline.pool.replaced_workers >= 1  # type: ignore[attr-defined]
    rows = read_leakage(paths.leakage_jsonl)
    keys = {(r.round, r.node_id, r.attack) for r in rows}
    assert len(rows) == len(keys) == 3 * 3 * 2  # every row present, none twice
    assert all(r.status in {"ok", "failed"} for r in rows)
    assert all(r.status == "ok" for r in rows if r.attack == "analytic")
    # retried on the replacement worker (max_retries=1), or recorded with the reason
    assert all(r.status == "ok" or "worker died" in r.reason for r in rows)


def test_raising_attack_is_recorded_and_training_is_unchanged(
    experiment: ExperimentConfig, tmp_path: Path
) -> None:
    curious, _ = _federation(experiment, RunPaths(tmp_path / "run"), ["test_raises"])
    random.seed(0)
    plain = FedAvg(fraction_evaluate=0.0).start(
        LocalGrid(client_app, experiment.federation.num_clients),
        initial_arrays(experiment),
        num_rounds=3,
        train_config=train_config(experiment, tmp_path / "plain-audit"),
    )
    for name, value in plain.arrays.items():
        assert value.numpy().tobytes() == curious[name].tobytes(), name
    rows = read_leakage(RunPaths(tmp_path / "run").leakage_jsonl)
    assert len(rows) == 3 * 3
    assert all(r.status == "failed" and "singular matrix on purpose" in r.reason for r in rows)


def test_full_pool_skips_with_a_reason_when_told_to(
    experiment: ExperimentConfig, tmp_path: Path
) -> None:
    cfg = replace(experiment, pool=PoolConfig(backend="inprocess", workers=1))
    paths = RunPaths(tmp_path / "run")
    recorder = LeakageRecorder(paths, AuditStore(paths.audit))
    plan = AttackPlan(["test_sleepy"], {}, 0, "cpu", max_pending=1, when_full="skip")
    pipeline = AttackPipeline(create_pool(cfg.pool), recorder, plan, model_spec(cfg))
    CuriousStrategy(FedAvg(fraction_evaluate=0.0), pipeline).start(
        LocalGrid(client_app, 3),
        initial_arrays(cfg),
        num_rounds=1,
        train_config=train_config(cfg, paths.audit),
    )
    pipeline.finish(60)
    recorder.close()
    rows = read_leakage(paths.leakage_jsonl)
    assert len(rows) == 3
    skipped = [r for r in rows if r.status == "skipped"]
    assert len(skipped) == 2 and all("pool.max_pending=1" in r.reason for r in skipped)


@pytest.mark.slow
def test_report_rebuilds_a_run_killed_mid_round(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "fedleak.simulator.cli",
        "run",
        f"output_dir={tmp_path}",
        "federation.rounds=4",
        "federation.num_clients=4",
        "attack=analytic_ig",
        "attack.params.inverting_gradients.iterations=3000",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 180
        rows_file = None
        while time.monotonic() < deadline:
            found = list(tmp_path.glob("*/*/leakage.jsonl"))  # named by its settings
            if found and len(read_leakage(found[0])) >= 2:
                rows_file = found[0]
                break
            time.sleep(0.2)
        assert rows_file is not None, "the run produced no rows in time"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, Ray and every actor at once
        proc.wait()
    run_dir = rows_file.parent
    written = read_leakage(rows_file)
    assert not (run_dir / "summary.txt").exists()  # the run never reached its report

    report = subprocess.run(
        [sys.executable, "-m", "fedleak.simulator.cli", "report", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    assert "analytic" in report.stdout
    assert (run_dir / "summary.txt").is_file()
    csv_rows = (run_dir / "leakage.csv").read_text().strip().splitlines()
    assert len(csv_rows) == 1 + len(written)
    assert list((run_dir / "grids").glob("round_*.png"))
