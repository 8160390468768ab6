"""CuriousStrategy: an honest aggregator that is curious about every update.

It wraps any Message-API strategy (as Flower's ``DifferentialPrivacyServerSideFixedClipping``
wraps one): training is exactly what the inner strategy does; on the side, each train reply
is captured and handed to the attack pipeline without waiting.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedleak.attacks.types import TrainingHyperparams
from fedleak.server.capture import CapturedRound, capture_arrays, capture_reply
from fedleak.server.wrapper import StrategyWrapper
from fedleak.simulator.config.hyperparams import hyperparams_from_config


class UpdateSink(Protocol):
    """Where captured rounds go (the attack pipeline)."""

    def intercept(self, captured: CapturedRound) -> None:
        """Take one round's captured replies; must return at once."""


class CuriousStrategy(StrategyWrapper):
    """Delegate everything to ``inner``; copy train replies to ``sink``.

    Parameters
    ----------
    inner : Strategy
        The real aggregation (e.g. ``FedAvg``); its results are returned unchanged.
    sink : UpdateSink
        Receives a :class:`~fedleak.server.capture.CapturedRound` per round.
    """

    role = "every train reply goes to the attack pool"

    def __init__(self, inner: Strategy, sink: UpdateSink) -> None:
        super().__init__(inner)
        self.sink = sink
        self._sent: dict[int, tuple[dict[str, Array], TrainingHyperparams]] = {}
        self.rounds_intercepted = 0
        self.clients_trained: dict[int, int] = {}
        self.train_metrics: dict[int, MetricRecord] = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the global arrays and recipe sent this round, then delegate."""
        self._sent[server_round] = (capture_arrays(arrays), hyperparams_from_config(config))
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Capture every reply, aggregate with the inner strategy, then hand the captures off.

        Captures hold references to the replies' immutable arrays and are taken before the
        inner strategy sees the replies; the hand-off comes after aggregation so the
        pipeline's decoding never competes with it for the interpreter.
        """
        replies = list(replies)  # an iterable: materialise once, share with the inner strategy
        captured = tuple(c for c in map(capture_reply, replies) if c is not None)
        global_arrays, hyperparams = self._sent.pop(server_round)
        arrays, metrics = self.inner.aggregate_train(server_round, replies)
        self.sink.intercept(CapturedRound(server_round, global_arrays, hyperparams, captured))
        self.clients_trained[server_round] = len(captured)
        self.rounds_intercepted += 1
        if metrics is not None:
            self.train_metrics[server_round] = metrics
        return arrays, metrics
