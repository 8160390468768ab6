"""The attack pipeline: what an attack gets, and that its failures become rows."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from flwr.serverapp.strategy import FedAvg
from torch import nn

from fedleak.attacks import Attack, register_attack
from fedleak.attacks.registry import available_attacks
from fedleak.attacks.types import InterceptedUpdate, Reconstruction
from fedleak.clients.app import app as client_app
from fedleak.server.pipeline import AttackPipeline, AttackPlan
from fedleak.server.pool import AttackJob, create_pool
from fedleak.server.recorder import LeakageRecorder
from fedleak.server.strategy import CuriousStrategy
from fedleak.simulator.config.schema import ExperimentConfig
from fedleak.simulator.runtime.audit import AuditStore
from fedleak.simulator.runtime.results import RunPaths, read_leakage
from tests.flower_harness import LocalGrid
from tests.server.conftest import initial_arrays, model_spec, train_config

SEEN: list[tuple[Any, ...]] = []


class SpyAttack(Attack):
    """Records exactly what it is given; returns zeros."""

    name = "test_spy"

    def reconstruct(self, *args: Any, **kwargs: Any) -> Reconstruction:
        SEEN.append((args, kwargs))
        _, update = args
        shape = (update.hyperparams.batch_size, *update.input_shape)
        return Reconstruction(
            inputs=torch.zeros(shape).numpy(),
            labels=torch.zeros(shape[0], dtype=torch.long).numpy(),
        )


class ExplodingAttack(Attack):
    name = "test_exploding"

    def reconstruct(
        self, model: nn.Module, update: InterceptedUpdate, *, device: torch.device, seed: int
    ) -> Reconstruction:
        raise RuntimeError("gradient exploded on purpose")


for _cls in (SpyAttack, ExplodingAttack):
    if _cls.name not in available_attacks():
        register_attack(_cls.name, _cls)


def _run(
    cfg: ExperimentConfig, tmp_path: Path, names: list[str]
) -> tuple[RunPaths, list[AttackJob]]:
    paths = RunPaths(tmp_path / "run")
    audit = AuditStore(paths.audit)
    recorder = LeakageRecorder(paths, audit)
    pool = create_pool(cfg.pool)
    submitted: list[AttackJob] = []
    original_submit = pool.submit

    def spy_submit(job: AttackJob) -> None:
        submitted.append(job)
        original_submit(job)

    pool.submit = spy_submit  # type: ignore[method-assign]
    pipeline = AttackPipeline(
        pool, recorder, AttackPlan(names, {}, 0, "cpu"), model_spec(cfg), audit
    )
    CuriousStrategy(FedAvg(fraction_evaluate=0.0), pipeline).start(
        LocalGrid(client_app, 3),
        initial_arrays(cfg),
        num_rounds=2,
        train_config=train_config(cfg, paths.audit),
    )
    pipeline.finish(60)
    recorder.close()
    return paths, submitted


def test_attack_receives_only_the_intercepted_update(
    experiment: ExperimentConfig, tmp_path: Path
) -> None:
    SEEN.clear()
    paths, jobs = _run(experiment, tmp_path, ["test_spy"])
    assert len(SEEN) == 2 * 3
    for args, kwargs in SEEN:
        model, update = args
        assert isinstance(model, nn.Module)
        assert isinstance(update, InterceptedUpdate)
        assert set(kwargs) == {"device", "seed"}
        assert update.disclosed_labels is None  # the default threat model discloses nothing
    audit = AuditStore(paths.audit)
    for job in jobs:
        payload = pickle.dumps(job)
        truth = audit.read(job.update.server_round, job.update.node_id)
        assert str(paths.audit).encode() not in payload
        assert truth.inputs.tobytes() not in payload
        assert set(vars(job)) == {"attack", "params", "update", "model_spec", "seed", "device"}


def test_attack_that_raises_is_recorded_failed_with_reason(
    experiment: ExperimentConfig, tmp_path: Path
) -> None:
    paths, _ = _run(experiment, tmp_path, ["test_exploding", "analytic"])
    rows = read_leakage(paths.leakage_jsonl)
    exploding = [r for r in rows if r.attack == "test_exploding"]
    analytic = [r for r in rows if r.attack == "analytic"]
    assert len(exploding) == len(analytic) == 2 * 3
    assert all(
        r.status == "failed" and "gradient exploded on purpose" in r.reason for r in exploding
    )
    assert all(r.status == "ok" and r.psnr_min >= 60 for r in analytic)


def test_malformed_update_is_recorded_not_attacked(
    experiment: ExperimentConfig, tmp_path: Path
) -> None:
    from flwr.app import Array

    from fedleak.attacks.types import TrainingHyperparams
    from fedleak.server.capture import CapturedReply, CapturedRound, capture_arrays

    arrays = capture_arrays(initial_arrays(experiment))
    broken = dict(arrays)
    first = next(iter(broken))
    broken[first] = Array(broken[first].numpy()[:1])  # a truncated weight matrix
    paths = RunPaths(tmp_path / "run")
    recorder = LeakageRecorder(paths, None)
    plan = AttackPlan(["analytic"], {}, 0, "cpu")
    pipeline = AttackPipeline(create_pool(experiment.pool), recorder, plan, model_spec(experiment))
    hp = TrainingHyperparams("fedsgd", 0.1, 1, 1)
    replies = (CapturedReply(7, broken, 1), CapturedReply(8, arrays, 1))
    pipeline.intercept(CapturedRound(1, arrays, hp, replies))
    pipeline.finish(30)
    recorder.close()
    rows = {r.node_id: r for r in read_leakage(paths.leakage_jsonl)}
    assert (
        rows[7].status == "failed"
        and "update rejected" in rows[7].reason
        and first in rows[7].reason
    )
    assert rows[8].status == "not_applicable"  # a zero update: no active neuron (Phong et al. 2018)
    assert pipeline.pending == 0


def test_pipeline_error_becomes_failed_rows_not_a_dead_thread(
    experiment: ExperimentConfig, tmp_path: Path
) -> None:
    from fedleak.server.policy import AttackPolicy

    class BrokenPolicy(AttackPolicy):
        def select(self, server_round: int, node_ids: Any) -> set[int]:
            if server_round == 1:
                raise OverflowError("node id does not fit")
            return set(node_ids)

    paths = RunPaths(tmp_path / "run")
    recorder = LeakageRecorder(paths, AuditStore(paths.audit))
    plan = AttackPlan(["analytic"], {}, 0, "cpu", policy=BrokenPolicy())
    pipeline = AttackPipeline(create_pool(experiment.pool), recorder, plan, model_spec(experiment))
    CuriousStrategy(FedAvg(fraction_evaluate=0.0), pipeline).start(
        LocalGrid(client_app, 3),
        initial_arrays(experiment),
        num_rounds=2,
        train_config=train_config(experiment, paths.audit),
    )
    pipeline.finish(60)
    recorder.close()
    rows = read_leakage(paths.leakage_jsonl)
    first = [r for r in rows if r.round == 1]
    assert len(first) == 3 and all("pipeline error OverflowError" in r.reason for r in first)
    assert [r.status for r in rows if r.round == 2] == ["ok"] * 3  # the thread lived on
    assert pipeline.pending == 0
