"""One whole federation on a Flower Grid: FedAvg wrapped by the curious strategy."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from rich.console import Console

from server.evaluation import CentralEvaluator
from server.pipeline import AttackPipeline, AttackPlan
from server.policy import AttackPolicy
from server.pool import create_pool
from server.recorder import LeakageRecorder
from server.strategy import CuriousStrategy
from server.validation import ValidatingStrategy
from simulator import record_keys as keys
from simulator.audit import AuditStore
from simulator.client_setup import ClientSetup
from simulator.config import ExperimentConfig
from simulator.experiment_data import cached_splits, initial_model, model_spec_for
from simulator.hyperparams import hyperparams_from_federation, hyperparams_to_config
from simulator.report import build_report
from simulator.results import JsonlAppender, RunPaths

console = Console(highlight=False, soft_wrap=True)


def run_federation(grid: Grid, cfg: ExperimentConfig, paths: RunPaths) -> CuriousStrategy:
    """Train ``cfg.federation.rounds`` rounds, attack every update, write the report.

    Returns the strategy (its inner aggregation results and per-round counters).
    """
    splits = cached_splits(
        cfg.dataset.name, cfg.dataset.data_dir, cfg.seed, cfg.dataset.test_fraction
    )
    spec = model_spec_for(
        cfg.model.name,
        splits.train,
        width=cfg.model.width,
        activation=cfg.model.activation,
        init=cfg.model.init,
    )
    model = initial_model(spec, cfg.seed, cfg.model.weights)
    audit = AuditStore(paths.audit) if cfg.attack.audit else None
    recorder = LeakageRecorder(paths, audit)
    plan = AttackPlan(
        names=cfg.attack.names,
        params=cfg.attack.params,
        seed=cfg.seed,
        device=cfg.device,
        disclose_labels="labels" in cfg.attack.disclose,
        policy=AttackPolicy(
            cfg.attack.rounds, cfg.attack.client_fraction, cfg.attack.client_ids, cfg.seed
        ),
        max_pending=cfg.pool.max_pending,
        when_full=cfg.pool.when_full,
    )
    pipeline = AttackPipeline(create_pool(cfg.pool), recorder, plan, spec, audit)
    fed = cfg.federation
    inner = FedAvg(
        fraction_train=fed.fraction_train,
        fraction_evaluate=0.0,
        min_available_nodes=fed.num_clients,
        min_train_nodes=1,
    )
    strategy = CuriousStrategy(inner, pipeline)
    server_strategy = ValidatingStrategy(
        strategy,
        pipeline,
        min_valid_replies=fed.min_valid_replies,
        max_num_examples=fed.max_num_examples,
    )

    def train_loss_of(server_round: int) -> float:
        metrics = strategy.train_metrics.get(server_round)
        if metrics is None or keys.TRAIN_LOSS not in metrics:
            return math.nan
        value = metrics[keys.TRAIN_LOSS]
        return float(value) if isinstance(value, int | float) else math.nan

    def progress(server_round: int, accuracy: float) -> None:
        best = recorder.best_psnr()
        console.print(
            f"round {server_round}/{fed.rounds} | clients trained "
            f"{strategy.clients_trained.get(server_round, 0)} | attacks pending "
            f"{pipeline.pending} done {pipeline.recorded} | best PSNR "
            f"{'-' if math.isnan(best) else f'{best:.1f} dB'} | test acc {accuracy:.3f}"
        )

    training_log = JsonlAppender(paths.training_jsonl)
    evaluator = CentralEvaluator(
        spec,
        splits.test,
        fed.loss,
        training_log,
        train_loss_of,
        progress,
        rejected_of=lambda server_round: len(server_strategy.rejections.get(server_round, [])),
    )
    setup = ClientSetup.from_experiment(cfg, audit_dir=str(paths.audit))
    train_config = ConfigRecord(
        {
            **hyperparams_to_config(hyperparams_from_federation(fed)),
            keys.CLIENT_SETUP: setup.to_json(),
        }
    )
    try:
        result = server_strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(model.state_dict()),
            num_rounds=fed.rounds,
            train_config=train_config,
            evaluate_fn=evaluator,
        )
        torch.save(result.arrays.to_torch_state_dict(), Path(paths.root) / "final_model.pt")
    finally:
        console.print(f"training done; waiting for {pipeline.pending} attack(s) to finish ...")
        pipeline.finish(cfg.pool.drain_timeout_s)
        recorder.close()
        training_log.close()
        table = build_report(paths)
        console.print(table)
        console.print(f"results in {paths.root}")
    return strategy
