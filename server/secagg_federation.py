"""A federation under secure aggregation: Flower's SecAgg+ workflow, attacks on the aggregate.

Flower 1.41 implements SecAgg+ only in the legacy workflow API, so this path drives
``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))`` with a ``LegacyContext`` and a
legacy ``FedAvg`` wrapped by :class:`~fedleak.server.secagg_strategy.CuriousSecAggStrategy`. The
round config (hyperparameters, ``server-round``, the client setup, the array names legacy
``Parameters`` lack) reaches the clients through ``on_fit_config_fn``; central evaluation
runs as the legacy ``evaluate_fn`` and writes the same ``training.jsonl`` rows.

What the plain path has and this one does not: per-round checkpoints (so no ``--resume``),
reply validation (the server never sees a reply's arrays to validate them) and the
canonical reply order (the masked sum does not depend on it).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from flwr.app import Array, ArrayRecord, Context, RecordDict
from flwr.common import (
    Metrics,
    NDArrays,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
from flwr.serverapp import Grid

from fedleak.server.lifecycle import FederationRun, train_loss
from fedleak.server.secagg_strategy import CuriousSecAggStrategy
from fedleak.simulator import record_keys as keys
from fedleak.simulator.config.hyperparams import hyperparams_from_federation, hyperparams_to_config
from fedleak.simulator.config.schema import ExperimentConfig, FederationConfig, SecAggSettings
from fedleak.simulator.runtime.results import RunPaths


def secagg_workflow(
    settings: SecAggSettings, clients_per_round: int, max_weight: float
) -> SecAggPlusWorkflow:
    """Flower's workflow for fedleak's ``defense.secagg`` settings.

    Flower takes an integer ``num_shares`` only above 2 and reads ``num_shares`` 1 (or
    1.0) as "every sampled client"; fedleak's ``num_shares`` equal to the clients per
    round therefore becomes 1.0 (plain SecAgg). The threshold is passed as the fraction
    ``reconstruction_threshold / num_shares``, which Flower resolves against the shares
    it actually uses, raising it to at least 2. ``max_weight`` bounds a client's
    ``num_examples``: SecAgg+ scales each update by ``num_examples / max_weight`` before
    quantising, so a tight bound keeps the quantisation error small.
    """
    shares: int | float = settings.num_shares
    if settings.num_shares >= clients_per_round:
        shares = 1.0
    return SecAggPlusWorkflow(
        num_shares=shares,
        reconstruction_threshold=settings.reconstruction_threshold / settings.num_shares,
        max_weight=max_weight,
        clipping_range=settings.clipping_range,
        quantization_range=settings.quantization_range,
    )


def _max_weight(fed: FederationConfig, num_train: int) -> float:
    """The most ``num_examples`` a client reports: one batch (FedSGD), its partition (FedAvg)."""
    return float(fed.batch_size if fed.mode == "fedsgd" else num_train)


def _array_record(names: list[str], values: NDArrays) -> ArrayRecord:
    """A state-dict-like ArrayRecord from legacy, unnamed arrays."""
    return ArrayRecord({n: Array(v) for n, v in zip(names, values, strict=True)})


def _weighted_train_loss(metrics: list[tuple[int, Metrics]]) -> Metrics:
    total = sum(n for n, _ in metrics)
    losses = [(n, m[keys.TRAIN_LOSS]) for n, m in metrics if keys.TRAIN_LOSS in m]
    if not total or not losses:
        return {}
    return {keys.TRAIN_LOSS: sum(n * float(v) for n, v in losses) / total}


def _curious_fedavg(
    run: FederationRun,
    names: list[str],
    evaluate_fn: Callable[[int, NDArrays, dict[str, Scalar]], tuple[float, dict[str, Scalar]]],
    base_config: dict[str, Scalar],
) -> CuriousSecAggStrategy:
    """Legacy FedAvg (what SecAgg+ drives) wrapped by the curious strategy."""
    fed = run.cfg.federation
    inner = FedAvg(
        fraction_fit=fed.fraction_train,
        fraction_evaluate=0.0,
        min_fit_clients=2,  # SecAgg+ needs at least two clients
        min_available_clients=fed.num_clients,
        evaluate_fn=evaluate_fn,
        on_fit_config_fn=lambda r: {**base_config, keys.SERVER_ROUND: r},
        initial_parameters=ndarrays_to_parameters([t.numpy() for t in run.initial_state.values()]),
        fit_metrics_aggregation_fn=_weighted_train_loss,
    )
    return CuriousSecAggStrategy(inner, run.side.pipeline, run.side.recorder, names, run.cfg.seed)


def run_secagg_federation(
    grid: Grid, cfg: ExperimentConfig, paths: RunPaths, start_round: int = 1
) -> CuriousSecAggStrategy:
    """Train ``cfg.federation.rounds`` rounds under SecAgg+, attack each round's aggregate.

    Raises
    ------
    RuntimeError
        For ``start_round > 1``: a secure-aggregation run keeps no checkpoints to resume.
    """
    if start_round != 1:
        raise RuntimeError(
            "defense.secagg runs cannot be resumed (Flower's SecAgg+ workflow always starts "
            "at round 1 and keeps no checkpoints); start the run again"
        )
    fed = cfg.federation
    run = FederationRun.start(cfg, paths)
    names = list(run.initial_state)
    base_config: dict[str, Scalar] = {
        **hyperparams_to_config(hyperparams_from_federation(fed)),
        keys.CLIENT_SETUP: run.setup.to_json(),
        keys.ARRAY_NAMES: json.dumps(names),
    }
    strategy: CuriousSecAggStrategy
    evaluator = run.evaluator(
        lambda server_round: strategy.clients_trained.get(server_round, 0),
        lambda server_round: train_loss(strategy.train_metrics.get(server_round)),
        trained_note=" (secure aggregate)",
    )

    def evaluate_fn(
        server_round: int, values: NDArrays, _config: dict[str, Scalar]
    ) -> tuple[float, dict[str, Scalar]]:
        evaluator(server_round, _array_record(names, values))
        row = evaluator.rows[-1]
        return row["test_loss"], {"test_accuracy": row["test_accuracy"]}

    strategy = _curious_fedavg(run, names, evaluate_fn, base_config)
    context = LegacyContext(
        Context(
            run_id=grid.run.run_id, node_id=0, node_config={}, state=RecordDict(), run_config={}
        ),
        config=ServerConfig(num_rounds=fed.rounds),
        strategy=strategy,
    )
    per_round = max(2, round(fed.num_clients * fed.fraction_train))
    workflow = DefaultWorkflow(
        fit_workflow=secagg_workflow(
            cfg.defense.secagg, per_round, _max_weight(fed, len(run.splits.train))
        )
    )
    with run.finishing():
        workflow(grid, context)
        final = compat.arrayrecord_to_parameters(
            context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True
        )
        run.save_final_model(
            _array_record(names, parameters_to_ndarrays(final)).to_torch_state_dict()
        )
    return strategy
