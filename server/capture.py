"""Cheap captures of what the server sent and received, and their conversion to updates.

Capturing keeps references to Flower ``Array`` objects (immutable serialised bytes), so the
hot path of ``aggregate_train`` copies nothing; decoding happens on the pipeline thread.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord

from fedleak.attacks.types import InterceptedUpdate, TrainingHyperparams
from fedleak.simulator import record_keys as keys


@dataclass(frozen=True)
class CapturedReply:
    """One train reply: sender, its arrays (by reference) and ``num-examples``."""

    node_id: int
    arrays: Mapping[str, Array]
    num_examples: int


@dataclass(frozen=True)
class CapturedRound:
    """Everything the pipeline needs about one round's train replies."""

    server_round: int
    global_arrays: Mapping[str, Array]
    hyperparams: TrainingHyperparams
    replies: tuple[CapturedReply, ...]


def capture_arrays(record: ArrayRecord) -> dict[str, Array]:
    """A new dict over the same immutable Array objects (order kept)."""
    return dict(record.items())


def capture_reply(msg: Message) -> CapturedReply | None:
    """Capture a train reply; ``None`` for an error reply or one without arrays.

    Looks records up by key: ``RecordDict.array_records`` rebuilds a dict on every access,
    which made capturing cost as much as aggregating a small model.
    """
    if msg.has_error() or keys.ARRAYS not in msg.content:
        return None
    arrays = msg.content[keys.ARRAYS]
    if not isinstance(arrays, ArrayRecord):
        return None
    metrics = msg.content.get(keys.METRICS)
    num_examples = 0
    if isinstance(metrics, MetricRecord):
        value = metrics.get(keys.NUM_EXAMPLES, 0)
        num_examples = int(value) if isinstance(value, int | float) else 0
    return CapturedReply(msg.metadata.src_node_id, capture_arrays(arrays), num_examples)


def decode(arrays: Mapping[str, Array]) -> OrderedDict[str, np.ndarray]:
    """Deserialise captured arrays to numpy."""
    return OrderedDict((name, array.numpy()) for name, array in arrays.items())


def to_update(
    captured: CapturedRound,
    reply: CapturedReply,
    *,
    global_params: OrderedDict[str, np.ndarray],
    input_shape: tuple[int, ...],
    num_classes: int,
    disclosed_labels: np.ndarray | None,
) -> InterceptedUpdate:
    """The :class:`InterceptedUpdate` of one reply.

    Raises
    ------
    ValueError
        If the reply's arrays do not match the global model's names and shapes.
    """
    client_params = decode(reply.arrays)
    if list(client_params) != list(global_params):
        raise ValueError(
            f"reply of node {reply.node_id} has arrays {list(client_params)[:4]}..., "
            f"expected the global model's {list(global_params)[:4]}..."
        )
    for name, value in client_params.items():
        if value.shape != global_params[name].shape:
            raise ValueError(
                f"reply of node {reply.node_id}: {name} has shape {value.shape}, "
                f"expected {global_params[name].shape}"
            )
    return InterceptedUpdate(
        server_round=captured.server_round,
        node_id=reply.node_id,
        global_params=global_params,
        client_params=client_params,
        num_examples=reply.num_examples,
        hyperparams=captured.hyperparams,
        input_shape=input_shape,
        num_classes=num_classes,
        disclosed_labels=disclosed_labels,
    )
