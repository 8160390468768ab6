"""One whole federation on a Flower Grid: FedAvg wrapped by the curious strategy."""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedleak.server.lifecycle import FederationRun, train_loss
from fedleak.server.pipeline import AttackPipeline
from fedleak.server.reproducible import ReproducibleStrategy
from fedleak.server.rounds import run_rounds
from fedleak.server.secagg_federation import run_secagg_federation
from fedleak.server.secagg_strategy import CuriousSecAggStrategy
from fedleak.server.strategy import CuriousStrategy
from fedleak.server.update_store import UpdateStore
from fedleak.server.validation import ValidatingStrategy
from fedleak.simulator import record_keys as keys
from fedleak.simulator.config.hyperparams import hyperparams_from_federation, hyperparams_to_config
from fedleak.simulator.config.schema import ExperimentConfig
from fedleak.simulator.runtime.checkpoint import load_checkpoint, save_checkpoint
from fedleak.simulator.runtime.results import RunPaths, read_leakage


def run_federation(
    grid: Grid, cfg: ExperimentConfig, paths: RunPaths, start_round: int = 1
) -> CuriousStrategy | CuriousSecAggStrategy:
    """Train rounds ``start_round..cfg.federation.rounds``, attack every update, report.

    From ``start_round > 1`` (``fedleak run --resume``) the global model comes from the
    run's checkpoint, and attacks of earlier rounds that never produced a row run again
    from the intercepted updates kept on disk. Returns the curious strategy (counters).
    With ``defense.secagg`` the run goes through Flower's SecAgg+ workflow instead
    (:mod:`fedleak.server.secagg_federation`): only each round's aggregate is attacked.
    """
    if cfg.defense.secagg.enabled:
        return run_secagg_federation(grid, cfg, paths, start_round)
    run = FederationRun.start(cfg, paths)
    pipeline, fed = run.side.pipeline, cfg.federation
    inner = FedAvg(
        fraction_train=fed.fraction_train,
        fraction_evaluate=0.0,
        min_available_nodes=fed.num_clients,
        min_train_nodes=1,
    )
    strategy = CuriousStrategy(inner, pipeline)
    server_strategy = ValidatingStrategy(
        ReproducibleStrategy(strategy, cfg.seed),
        pipeline,
        min_valid_replies=fed.min_valid_replies,
        max_num_examples=fed.max_num_examples,
    )
    evaluator = run.evaluator(
        lambda server_round: strategy.clients_trained.get(server_round, 0),
        lambda server_round: train_loss(strategy.train_metrics.get(server_round)),
        rejected_of=lambda server_round: len(server_strategy.rejections.get(server_round, [])),
    )
    train_config = ConfigRecord(
        {
            **hyperparams_to_config(hyperparams_from_federation(fed)),
            keys.CLIENT_SETUP: run.setup.to_json(),
        }
    )
    arrays = ArrayRecord(run.initial_state)
    if start_round > 1:
        arrays = _resume_state(paths, start_round, pipeline, run.side.updates)
    with run.finishing():
        final = run_rounds(
            server_strategy,
            grid,
            arrays,
            first_round=start_round,
            last_round=fed.rounds,
            train_config=train_config,
            evaluate_fn=evaluator,
            on_round_end=lambda server_round, arrays: _checkpoint(
                paths, server_round, arrays, pipeline
            ),
        )
        run.save_final_model(final.to_torch_state_dict())
    return strategy


def _resume_state(
    paths: RunPaths, start_round: int, pipeline: AttackPipeline, updates: UpdateStore | None
) -> ArrayRecord:
    """The checkpointed model before ``start_round``; queue the attacks left unfinished."""
    checkpoint = load_checkpoint(paths.root)
    if checkpoint is None or checkpoint.server_round != start_round - 1:
        found = "none" if checkpoint is None else f"round {checkpoint.server_round}"
        raise RuntimeError(
            f"cannot resume {paths.root} at round {start_round}: checkpoint is {found}"
        )
    if updates is not None:
        done = {(r.round, r.node_id, r.attack) for r in read_leakage(paths.leakage_jsonl)}
        stored = [u for r in range(1, start_round) for u in updates.load_round(r)]
        pipeline.resubmit(stored, done)
    return checkpoint.arrays


def _checkpoint(
    paths: RunPaths, server_round: int, arrays: ArrayRecord, pipeline: AttackPipeline
) -> None:
    """Checkpoint only once the round's updates are persisted (nothing lost on a crash)."""
    pipeline.wait_until_persisted()
    save_checkpoint(paths.root, server_round, arrays)
