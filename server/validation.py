"""Reject hostile or broken train replies before they reach the aggregation.

Two stages keep clean rounds cheap:

1. Structure, from Flower's array metadata, without decoding: exactly one ArrayRecord and
   one MetricRecord, the global model's names, shapes and dtypes, and a sane
   ``num-examples``.
2. Values: every array must be finite, read through a zero-copy view of its bytes
   (:func:`_values`), so the check costs a pass over memory, not a decode.

:class:`ValidatingStrategy` applies both before the wrapped strategy sees the replies; it is
the honest server's hygiene, separate from the curious plugin.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedleak.server.wrapper import StrategyWrapper
from fedleak.simulator import exit_codes
from fedleak.simulator import record_keys as keys
from fedleak.simulator.errors import FedleakError
from fedleak.simulator.runtime.failures import failure_cause


@dataclass(frozen=True)
class Rejection:
    """A reply left out of the aggregation, and why."""

    node_id: int
    reason: str


class TooFewValidRepliesError(FedleakError, RuntimeError):
    """Fewer valid replies than ``federation.min_valid_replies`` remained in a round."""

    exit_code = exit_codes.TOO_FEW_VALID_REPLIES


Signature = tuple[tuple[str, tuple[int, ...], str], ...]


def signature(arrays: Mapping[str, Array]) -> Signature:
    """(name, shape, dtype) of every array, from metadata only."""
    return tuple((name, tuple(a.shape), a.dtype) for name, a in arrays.items())


@dataclass(frozen=True)
class ValidReply:
    """A reply that passed the structural checks, with what was read from it."""

    message: Message
    node_id: int
    arrays: ArrayRecord
    num_examples: int


def _signature_problem(got: Signature, expected: Signature) -> str:
    names, wanted = [n for n, _, _ in got], [n for n, _, _ in expected]
    if names != wanted:
        missing, extra = set(wanted) - set(names), set(names) - set(wanted)
        return (
            f"arrays differ from the global model: missing {sorted(missing)}, extra {sorted(extra)}"
        )
    for (name, shape, dtype), (_, want_shape, want_dtype) in zip(got, expected, strict=True):
        if (shape, dtype) != (want_shape, want_dtype):
            return f"{name} is {dtype}{list(shape)}, expected {want_dtype}{list(want_shape)}"
    return "arrays differ from the global model"


def _num_examples_problem(n: object, max_num_examples: int) -> str | None:
    if isinstance(n, bool) or not isinstance(n, int | float) or not math.isfinite(n):
        return f"{keys.NUM_EXAMPLES} is {n!r}, expected a positive integer"
    if n != int(n) or not 0 < n <= max_num_examples:
        return f"{keys.NUM_EXAMPLES} is {n!r}, outside 1..{max_num_examples}"
    return None


def _records(msg: Message) -> tuple[ArrayRecord, MetricRecord] | str:
    """The reply's ArrayRecord and MetricRecord, or why it has not exactly those two."""
    if msg.has_error():  # the reason holds the client's whole traceback: keep its cause
        return f"error reply (code {msg.error.code}): {failure_cause(msg.error.reason or '')}"
    content = msg.content
    if len(content) != 2 or keys.ARRAYS not in content or keys.METRICS not in content:
        return f"records {sorted(content)}, expected exactly {sorted([keys.ARRAYS, keys.METRICS])}"
    arrays, metrics = content[keys.ARRAYS], content[keys.METRICS]
    if not isinstance(arrays, ArrayRecord) or not isinstance(metrics, MetricRecord):
        return f"'{keys.ARRAYS}' must be an ArrayRecord and '{keys.METRICS}' a MetricRecord"
    return arrays, metrics


def check_structure(
    replies: Sequence[Message], reference: Mapping[str, Array], max_num_examples: int
) -> tuple[list[ValidReply], list[Rejection]]:
    """Split replies into structurally valid ones and rejections (no array is decoded).

    FedAvg needs one MetricRecord key set for all replies; the set most replies share wins.
    """
    expected = signature(reference)
    read: list[tuple[Message, ArrayRecord, MetricRecord, frozenset[str]]] = []
    rejected: list[Rejection] = []
    for msg in replies:
        records = _records(msg)
        if isinstance(records, str):
            rejected.append(Rejection(msg.metadata.src_node_id, records))
        else:
            read.append((msg, *records, frozenset(records[1])))
    usual = Counter(k for *_, k in read).most_common(1)[0][0] if read else frozenset()
    valid: list[ValidReply] = []
    for msg, arrays, metrics, metric_keys in read:
        node_id = msg.metadata.src_node_id
        got = signature(arrays)
        n = metrics.get(keys.NUM_EXAMPLES)
        if got != expected:
            problem: str | None = _signature_problem(got, expected)
        elif metric_keys != usual:
            problem = f"metrics {sorted(metric_keys)}, the other clients sent {sorted(usual)}"
        else:
            problem = _num_examples_problem(n, max_num_examples)
        if problem is None:
            valid.append(ValidReply(msg, node_id, arrays, int(n)))  # type: ignore[arg-type]
        else:
            rejected.append(Rejection(node_id, problem))
    return valid, rejected


def _values(array: Array) -> np.ndarray:
    """A flat read-only view of an Array's values, without parsing its .npy header.

    ``Array.numpy()`` runs numpy's header parser (~25 us an array); the .npy preamble gives
    the header length directly: magic (6 bytes), version (2), then a little-endian length
    of 2 bytes (version 1) or 4 bytes (versions 2 and 3).
    """
    data = array.data
    if data[:6] != b"\x93NUMPY":
        return np.asarray(array.numpy()).ravel()
    if data[6] == 1:
        offset = 10 + int.from_bytes(data[8:10], "little")
    else:
        offset = 12 + int.from_bytes(data[8:12], "little")
    return np.frombuffer(data, dtype=np.dtype(array.dtype), offset=offset)


def non_finite_replies(replies: Sequence[ValidReply]) -> list[Rejection]:
    """Name the arrays holding NaN or Inf in each reply."""
    rejected = []
    for reply in replies:
        bad = [n for n, a in reply.arrays.items() if not np.isfinite(_values(a)).all()]
        if bad:
            rejected.append(Rejection(reply.node_id, f"non-finite values in {bad}"))
    return rejected


def validate_replies(
    replies: Sequence[Message], reference: Mapping[str, Array], max_num_examples: int
) -> tuple[list[ValidReply], list[Rejection]]:
    """Structure, then values: the replies fit to aggregate and the rejected ones."""
    valid, rejected = check_structure(replies, reference, max_num_examples)
    poisoned = non_finite_replies(valid)
    if poisoned:
        bad = {r.node_id for r in poisoned}
        valid = [v for v in valid if v.node_id not in bad]
        rejected += poisoned
    return valid, rejected


def summarise_rejections(rejected: Sequence[Rejection], shown: int = 3) -> str:
    """``12 x <reason> (node 4, 9, 17, ...)`` per distinct reason, most frequent first."""
    nodes: dict[str, list[int]] = {}
    for rejection in rejected:
        nodes.setdefault(rejection.reason, []).append(rejection.node_id)
    parts = []
    for reason, ids in sorted(nodes.items(), key=lambda item: -len(item[1])):
        listed = ", ".join(str(i) for i in ids[:shown]) + (", ..." if len(ids) > shown else "")
        parts.append(f"{len(ids)} x {reason} (node {listed})")
    return "; ".join(parts) or "none"


class RejectionSink(Protocol):
    """Where rejected replies are reported (the attack pipeline records them)."""

    def reject(self, server_round: int, rejections: Sequence[Rejection]) -> None:
        """Take one round's rejections; must return at once."""


class ValidatingStrategy(StrategyWrapper):
    """Drop hostile or broken train replies before ``inner`` aggregates; delegate the rest.

    Parameters
    ----------
    inner : Strategy
        The strategy that aggregates the valid replies (e.g. the curious wrapper of FedAvg).
    sink : RejectionSink | None
        Receives each round's rejections.
    min_valid_replies : int
        A round with fewer valid replies raises :class:`TooFewValidRepliesError`.
    max_num_examples : int
        Largest believable ``num-examples``.
    """

    role = "broken or hostile replies are rejected"

    def __init__(
        self,
        inner: Strategy,
        sink: RejectionSink | None = None,
        *,
        min_valid_replies: int = 1,
        max_num_examples: int = 1_000_000,
    ) -> None:
        super().__init__(inner)
        self.sink = sink
        self.min_valid_replies = min_valid_replies
        self.max_num_examples = max_num_examples
        self.rejections: dict[int, list[Rejection]] = {}
        self._reference: dict[int, dict[str, Array]] = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the global arrays replies must match, then delegate."""
        self._reference[server_round] = dict(arrays.items())
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Validate every reply; the inner strategy aggregates only the valid ones.

        Raises
        ------
        TooFewValidRepliesError
            When fewer than ``min_valid_replies`` valid replies remain.
        """
        reference = self._reference.pop(server_round)
        valid, rejected = validate_replies(list(replies), reference, self.max_num_examples)
        self.rejections[server_round] = rejected
        if rejected and self.sink is not None:
            self.sink.reject(server_round, rejected)
        if len(valid) < self.min_valid_replies:
            reasons = summarise_rejections(rejected)
            raise TooFewValidRepliesError(
                f"round {server_round}: {len(valid)} valid replies, fewer than "
                f"federation.min_valid_replies={self.min_valid_replies}; rejected: {reasons}"
            )
        return self.inner.aggregate_train(server_round, [v.message for v in valid])
