"""The round loop of a federation, from any round (``Strategy.start`` always begins at 1)."""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

EvaluateFn = Callable[[int, ArrayRecord], MetricRecord | None]
RoundEnd = Callable[[int, ArrayRecord], None]


def run_rounds(
    strategy: Strategy,
    grid: Grid,
    arrays: ArrayRecord,
    *,
    first_round: int,
    last_round: int,
    train_config: ConfigRecord,
    evaluate_fn: EvaluateFn,
    on_round_end: RoundEnd,
    timeout: float = 3600.0,
) -> ArrayRecord:
    """Rounds ``first_round..last_round`` as ``Strategy.start`` runs them; returns the model.

    The initial model is evaluated only when starting at round 1 (a resumed run evaluated
    it already). ``on_round_end`` runs after each round's evaluation (checkpoints).
    """
    if first_round == 1:
        evaluate_fn(0, arrays)
    for server_round in range(first_round, last_round + 1):
        replies = grid.send_and_receive(
            messages=strategy.configure_train(server_round, arrays, train_config, grid),
            timeout=timeout,
        )
        aggregated, _ = strategy.aggregate_train(server_round, replies)
        if aggregated is not None:
            arrays = aggregated
        evaluate_replies = grid.send_and_receive(
            messages=strategy.configure_evaluate(server_round, arrays, ConfigRecord(), grid),
            timeout=timeout,
        )
        strategy.aggregate_evaluate(server_round, evaluate_replies)
        evaluate_fn(server_round, arrays)
        on_round_end(server_round, arrays)
    return arrays
