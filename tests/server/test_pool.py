"""Pool backends: results come back, failures and deadlines become rows, never exceptions."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import cast

import numpy as np
import pytest
import torch

from fedleak.attacks import Attack, register_attack
from fedleak.attacks.registry import available_attacks
from fedleak.attacks.types import (
    AttackFailure,
    InterceptedUpdate,
    Reconstruction,
    TrainingHyperparams,
)
from fedleak.server.pipeline import AttackPipeline, AttackPlan
from fedleak.server.pool import AttackJob, AttackPool, AttackResult, create_pool
from fedleak.server.recorder import LeakageRecorder
from fedleak.simulator.config.schema import PoolConfig
from fedleak.simulator.models.architectures import ModelSpec, build_model


class _SlowAttack(Attack):
    name = "test_slow"

    def reconstruct(self, model, update, *, device, seed) -> Reconstruction:  # type: ignore[no-untyped-def]
        time.sleep(5.0)
        return Reconstruction(np.zeros((1, 1, 8, 8), np.float32), np.zeros(1, np.int64))


if _SlowAttack.name not in available_attacks():
    register_attack(_SlowAttack.name, _SlowAttack)


def _job(attack: str, node: int = 1) -> AttackJob:
    spec = ModelSpec("mlp", (1, 8, 8), 10)
    model = build_model(spec, seed=0)
    x, y = torch.rand(1, 1, 8, 8), torch.tensor([3])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    glob = OrderedDict((k, v.detach().numpy().copy()) for k, v in model.state_dict().items())
    client = OrderedDict((k, glob[k] - 0.1 * g.numpy()) for k, g in zip(glob, grads, strict=True))
    hp = TrainingHyperparams("fedsgd", 0.1, 1, 1)
    update = InterceptedUpdate(1, node, glob, client, 1, hp, (1, 8, 8), 10)
    return AttackJob(attack, {}, update, spec, seed=0, device="cpu")


def test_unknown_backend_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match=r"available: \['inprocess', 'ray'\]"):
        create_pool(PoolConfig(backend="dask"))


def test_backend_choices_come_from_the_registry() -> None:
    from fedleak.simulator.config.choices import POOL_BACKENDS
    from fedleak.simulator.config.schema import ConfigError, experiment_from_mapping
    from fedleak.simulator.plugins import import_object

    for name, factory in POOL_BACKENDS.items():  # each import path names an AttackPool
        assert issubclass(import_object(str(factory)), AttackPool), name
    with pytest.raises(ConfigError, match=r"pool.backend: 'dask' is not one of \['inprocess'"):
        experiment_from_mapping({"pool": {"backend": "dask"}})


def test_inprocess_pool_returns_every_result() -> None:
    pool = create_pool(PoolConfig(backend="inprocess", workers=2))
    for node in (1, 2, 3):
        pool.submit(_job("analytic", node))
    results = pool.drain(60)
    assert pool.pending == 0
    assert sorted(r.job.update.node_id for r in results) == [1, 2, 3]
    assert all(isinstance(r.outcome, Reconstruction) for r in results)
    pool.shutdown()


def test_drain_deadline_records_unfinished_attacks_as_timeout() -> None:
    pool = create_pool(PoolConfig(backend="inprocess", workers=1))
    pool.submit(_job("analytic", 1))
    pool.submit(_job("test_slow", 2))
    time.sleep(0.5)
    results = {r.job.update.node_id: r for r in pool.poll() + pool.drain(0.2)}
    assert isinstance(results[1].outcome, Reconstruction)
    assert isinstance(results[2].outcome, AttackFailure) and results[2].outcome.status == "timeout"
    assert "within the 0.2 s drain deadline" in results[2].outcome.reason
    pool.shutdown()


def test_drain_timeout_reason_states_the_deadline_that_was_set_not_the_time_left() -> None:
    """The run spends most of its 300 s deadline polling, then drains with what is left (0 s)."""
    pool = create_pool(PoolConfig(backend="inprocess", workers=1))
    pool.submit(_job("test_slow", 1))
    (result,) = pool.drain(0.0, deadline_s=300.0)
    assert isinstance(result.outcome, AttackFailure) and result.outcome.status == "timeout"
    assert "within the 300 s drain deadline (pool.drain_timeout_s)" in result.outcome.reason
    pool.shutdown()


class _Rows:
    """Stands in for the leakage recorder: keeps what the pipeline records."""

    def __init__(self) -> None:
        self.results: list[AttackResult] = []

    def record(self, result: AttackResult) -> None:
        self.results.append(result)


def test_pipeline_finish_records_the_configured_drain_deadline() -> None:
    pool = create_pool(PoolConfig(backend="inprocess", workers=1))
    rows = _Rows()
    job = _job("test_slow", 1)
    recorder = cast(LeakageRecorder, rows)
    pipeline = AttackPipeline(
        pool, recorder, AttackPlan(["test_slow"], {}, 0, "cpu"), job.model_spec
    )
    pool.submit(job)
    pipeline.finish(0.5)  # polls for the whole 0.5 s, then drains the rest with 0 s left
    (result,) = rows.results
    assert isinstance(result.outcome, AttackFailure) and result.outcome.status == "timeout"
    assert "within the 0.5 s drain deadline" in result.outcome.reason


@pytest.mark.slow
def test_ray_pool_runs_attacks_in_actors() -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        pool = create_pool(PoolConfig(backend="ray", workers=1, num_cpus=1.0))
        pool.submit(_job("analytic", 1))
        pool.submit(_job("test_slow", 2))
        (fast,) = [r for r in pool.drain(60) if r.job.update.node_id == 1] or [None]
        assert fast is not None and isinstance(fast.outcome, Reconstruction)
        assert fast.worker and fast.worker.split(":")[1] != str(__import__("os").getpid())
        pool.shutdown()
    finally:
        ray.shutdown()
