"""CuriousSecAggStrategy: the curious server when it only ever sees the secure aggregate.

Flower's ``SecAggPlusWorkflow`` unmasks the sum of the round's masked updates and hands it
to a legacy strategy's ``aggregate_fit`` as the ``parameters`` of every ``FitRes`` (each
client's own update never exists on the server; ``num_examples`` and fit metrics travel in
the clear). Per-client attacks are therefore impossible; the curious wrapper attacks the one
thing it has: the round's aggregate, submitted as a single intercepted update from node
:data:`~fedleak.simulator.record_keys.AGGREGATE_NODE_ID`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np
from flwr.app import Array
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy

from fedleak.attacks.types import TrainingHyperparams
from fedleak.server.capture import CapturedReply, CapturedRound
from fedleak.server.strategy import UpdateSink
from fedleak.simulator import record_keys as keys
from fedleak.simulator.config.hyperparams import hyperparams_from_config


def like_model(values: NDArrays, model: NDArrays) -> NDArrays:
    """``values`` in the dtypes of ``model``'s arrays (SecAgg+ dequantises to float64)."""
    return [np.ascontiguousarray(v, dtype=m.dtype) for v, m in zip(values, model, strict=True)]


class AggregateAuditor(Protocol):
    """Who learns which clients a round's aggregate sums (the leakage recorder)."""

    def register_aggregate(self, server_round: int, node_ids: Sequence[int]) -> None:
        """Note the clients behind the round's aggregate (its ground truth)."""


class CuriousSecAggStrategy(Strategy):
    """Delegate to a legacy ``inner`` strategy; send each round's aggregate to ``sink``.

    Parameters
    ----------
    inner : Strategy
        Legacy aggregation (``flwr.server.strategy.FedAvg``); its results are returned
        with the arrays cast back to the model's dtypes (SecAgg+ dequantises to float64).
    sink : UpdateSink
        Receives one :class:`~fedleak.server.capture.CapturedRound` per round, whose only reply is
        the aggregate (``num_examples`` = the round's total).
    auditor : AggregateAuditor
        Told which clients each aggregate sums, before the sink sees it.
    names : Sequence[str]
        The model's state-dict names, in the order of the legacy ``Parameters``.
    seed : int
        Seeds node sampling and SecAgg+'s neighbour shuffle per round (Python's ``random``).
    """

    def __init__(
        self,
        inner: Strategy,
        sink: UpdateSink,
        auditor: AggregateAuditor,
        names: Sequence[str],
        seed: int,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.sink = sink
        self.auditor = auditor
        self.names = list(names)
        self.seed = seed
        self._sent: dict[int, tuple[NDArrays, TrainingHyperparams]] = {}
        self.rounds_intercepted = 0
        self.clients_trained: dict[int, int] = {}
        self.train_metrics: dict[int, dict[str, Scalar]] = {}

    def __repr__(self) -> str:
        return f"CuriousSecAggStrategy(inner={self.inner!r})"

    def _named(self, values: NDArrays) -> dict[str, Array]:
        return {name: Array(value) for name, value in zip(self.names, values, strict=True)}

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.inner.initialize_parameters(client_manager)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Seed sampling, remember the global model and recipe sent, then delegate."""
        random.seed(f"fedleak/{self.seed}/{server_round}")  # Flower samples with `random`
        instructions = self.inner.configure_fit(server_round, parameters, client_manager)
        if instructions:
            config = instructions[0][1].config
            self._sent[server_round] = (
                parameters_to_ndarrays(parameters),
                hyperparams_from_config(config),
            )
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Aggregate with the inner strategy; hand the one aggregate the server saw to the sink.

        Every result's ``parameters`` is the unmasked weighted mean of the round (that is
        all SecAgg+ reveals), so the first one is the intercepted update. Its hyperparameters
        are the ones sent, except that in FedSGD the batch size is the round's total: FedAvg
        weights each client's mean gradient by its ``num_examples``, so the aggregate is
        exactly one SGD step on the union of the clients' batches, and attacks size their
        reconstruction from ``min(batch_size, num_examples)``.
        """
        aggregated, metrics = self.inner.aggregate_fit(server_round, results, failures)
        global_values, hyperparams = self._sent.pop(server_round)
        if aggregated is not None:
            values = like_model(parameters_to_ndarrays(aggregated), global_values)
            aggregated = ndarrays_to_parameters(values)
        if results:
            seen = like_model(parameters_to_ndarrays(results[0][1].parameters), global_values)
            total = sum(res.num_examples for _, res in results)
            self.auditor.register_aggregate(server_round, [proxy.node_id for proxy, _ in results])
            reply = CapturedReply(keys.AGGREGATE_NODE_ID, self._named(seen), total)
            if hyperparams.mode == "fedsgd":  # the aggregate is one SGD step on the union batch
                hyperparams = replace(hyperparams, batch_size=total)
            captured = CapturedRound(
                server_round, self._named(global_values), hyperparams, (reply,)
            )
            self.sink.intercept(captured)
            self.rounds_intercepted += 1
        self.clients_trained[server_round] = len(results)
        self.train_metrics[server_round] = metrics
        return aggregated, metrics

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        return self.inner.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        return self.inner.aggregate_evaluate(server_round, results, failures)

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        return self.inner.evaluate(server_round, parameters)
