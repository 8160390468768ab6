"""Reproducible rounds: seeded node sampling and a canonical order of the replies.

Flower samples nodes with Python's global ``random`` and returns replies in arrival order,
and FedAvg's float sums depend on that order; node ids are random per run. This wrapper
seeds the sampling per round and hands replies on sorted by a checksum of their arrays, so
the same config and seed give the same global model in every run, a resumed one included.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedleak.server.wrapper import StrategyWrapper
from fedleak.simulator import record_keys as keys


def content_key(msg: Message) -> int:
    """CRC-32 of a reply's array bytes: stable across processes, unlike ``hash``."""
    crc = 0
    arrays = msg.content.get(keys.ARRAYS)
    if isinstance(arrays, ArrayRecord):
        for array in arrays.values():
            crc = zlib.crc32(array.data, crc)
    return crc


class ReproducibleStrategy(StrategyWrapper):
    """Seed node sampling with ``(seed, round)``; pass replies to ``inner`` in content order.

    Parameters
    ----------
    inner : Strategy
        The wrapped strategy.
    seed : int
        The experiment seed.
    """

    role = "seeded sampling, replies in content order"

    def __init__(self, inner: Strategy, seed: int) -> None:
        super().__init__(inner)
        self.seed = seed

    def __repr__(self) -> str:
        return f"ReproducibleStrategy(inner={self.inner!r}, seed={self.seed})"

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        random.seed(f"fedleak/{self.seed}/{server_round}")  # Flower samples with `random`
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        ordered = sorted(replies, key=content_key)
        return self.inner.aggregate_train(server_round, ordered)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        random.seed(f"fedleak/{self.seed}/{server_round}/evaluate")
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, sorted(replies, key=content_key))
