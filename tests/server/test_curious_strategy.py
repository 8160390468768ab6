"""The curious server is honest: aggregation is untouched, updates are what the clients sent."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord
from flwr.serverapp.strategy import FedAvg

from fedleak.attacks.losses import training_loss
from fedleak.clients.app import app as client_app
from fedleak.server.capture import CapturedRound
from fedleak.server.pipeline import AttackPipeline, AttackPlan
from fedleak.server.pool import create_pool
from fedleak.server.recorder import LeakageRecorder
from fedleak.server.strategy import CuriousStrategy
from fedleak.simulator.config.schema import ExperimentConfig
from fedleak.simulator.models.architectures import build_model
from fedleak.simulator.runtime.audit import AuditStore
from fedleak.simulator.runtime.results import RunPaths, read_leakage
from tests.flower_harness import LocalGrid
from tests.server.conftest import initial_arrays, model_spec, train_config


def _final_arrays(result_arrays: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in result_arrays.items()}


def test_wrapper_aggregation_is_bit_identical_to_fedavg(
    experiment: ExperimentConfig, tmp_path: Path
) -> None:
    cfg = experiment
    rounds = cfg.federation.rounds
    # Flower samples nodes with Python's `random`; the order of replies fixes FedAvg's float
    # summation order, so both runs must sample alike for a bitwise comparison.
    random.seed(0)
    plain = FedAvg(fraction_evaluate=0.0).start(
        LocalGrid(client_app, 3),
        initial_arrays(cfg),
        num_rounds=rounds,
        train_config=train_config(cfg, tmp_path / "audit-plain"),
    )
    paths = RunPaths(tmp_path / "run")
    audit = AuditStore(paths.audit)
    recorder = LeakageRecorder(paths, audit)
    plan = AttackPlan(
        ["analytic", "inverting_gradients"], {"inverting_gradients": {"iterations": 5}}, 0, "cpu"
    )
    pipeline = AttackPipeline(create_pool(cfg.pool), recorder, plan, model_spec(cfg), audit)
    random.seed(0)
    curious = CuriousStrategy(FedAvg(fraction_evaluate=0.0), pipeline).start(
        LocalGrid(client_app, 3),
        initial_arrays(cfg),
        num_rounds=rounds,
        train_config=train_config(cfg, paths.audit),
    )
    pipeline.finish(60)
    recorder.close()

    expected, got = _final_arrays(plain.arrays), _final_arrays(curious.arrays)
    assert list(expected) == list(got)
    for name in expected:
        assert expected[name].dtype == got[name].dtype
        assert expected[name].tobytes() == got[name].tobytes(), name
    # and the curious server did attack every update of every round
    rows = read_leakage(paths.leakage_jsonl)
    assert len(rows) == rounds * 3 * 2
    assert {(r.round, r.attack) for r in rows} == {
        (rnd, a) for rnd in range(1, rounds + 1) for a in ("analytic", "inverting_gradients")
    }


class _Collect:
    def __init__(self) -> None:
        self.rounds: list[CapturedRound] = []

    def intercept(self, captured: CapturedRound) -> None:
        self.rounds.append(captured)


def test_fedsgd_pseudo_gradient_equals_autograd_on_audited_batch(
    experiment: ExperimentConfig, tmp_path: Path
) -> None:
    cfg = experiment
    sink = _Collect()
    audit_dir = tmp_path / "audit"
    CuriousStrategy(FedAvg(fraction_evaluate=0.0), sink).start(
        LocalGrid(client_app, 3),
        initial_arrays(cfg),
        num_rounds=2,
        train_config=train_config(cfg, audit_dir),
    )
    from fedleak.server.capture import decode, to_update

    spec = model_spec(cfg)
    checked = 0
    for captured in sink.rounds:
        global_params = decode(captured.global_arrays)
        for reply in captured.replies:
            update = to_update(
                captured,
                reply,
                global_params=global_params,
                input_shape=spec.input_shape,
                num_classes=spec.num_classes,
                disclosed_labels=None,
            )
            truth = AuditStore(audit_dir).read(captured.server_round, reply.node_id)
            model = build_model(spec)
            model.load_state_dict({k: torch.from_numpy(v) for k, v in global_params.items()})
            loss = training_loss(
                "cross_entropy",
                model(torch.from_numpy(truth.inputs)),
                torch.from_numpy(truth.labels),
            )
            grads = torch.autograd.grad(loss, list(model.parameters()))
            pseudo = update.pseudo_gradient()
            for (name, _), grad in zip(model.named_parameters(), grads, strict=True):
                torch.testing.assert_close(pseudo[name], grad, rtol=1e-4, atol=2e-5)
            assert update.num_examples == cfg.federation.batch_size == len(truth.labels)
            checked += 1
    assert checked == 2 * 3
