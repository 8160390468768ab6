"""The base of fedleak's strategy wrappers: hold ``inner``, delegate what is not overridden.

Flower's DP wrappers (``DifferentialPrivacyServerSideFixedClipping``) wrap rather than
subclass; fedleak's three wrappers (curious, validating, reproducible) do the same and
share the delegation of the hooks none of them changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import INFO
from typing import ClassVar

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy


class StrategyWrapper(Strategy):
    """A strategy around ``inner``; subclasses override the train hooks they act on.

    ``role`` is the one line :meth:`summary` prints for the wrapper before the inner
    strategy's own summary.
    """

    role: ClassVar[str] = ""

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"{type(self).__name__}(inner={self.inner!r})"

    def summary(self) -> None:
        log(INFO, "\t├── %s: %s", type(self).__name__, self.role)
        self.inner.summary()

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)
