"""Property tests over random shapes and values: validation, metrics, sample matching."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedleak.clients.app import app as client_app
from fedleak.server.validation import validate_replies
from fedleak.simulator.metrics.leakage import PSNR_CAP_DB, compute_leakage, match_samples, mse, psnr
from tests.flower_harness import LocalGrid

shapes = st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple)
images = st.tuples(st.integers(1, 4), st.sampled_from([1, 3]), st.integers(4, 10)).flatmap(
    lambda s: arrays(
        np.float32,
        (s[0], s[1], s[2], s[2]),
        elements=st.floats(0, 1, width=32, allow_nan=False),
    )
)


def _reply(values: dict[str, np.ndarray], num_examples: object = 3) -> Message:
    LocalGrid(client_app, 1)  # Flower's task identity for building messages
    request = Message(RecordDict(), dst_node_id=2, message_type="train")
    content = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(v) for k, v in values.items()}),
            "metrics": MetricRecord({"num-examples": num_examples}),  # type: ignore[dict-item]
        }
    )
    return Message(content, reply_to=request)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, data=st.data())
def test_validation_accepts_exactly_the_matching_finite_replies(
    shape: tuple[int, ...], data: st.DataObject
) -> None:
    reference_values = np.zeros(shape, np.float32)
    reference = {"w": Array(reference_values)}
    values = data.draw(arrays(np.float32, shape, elements=st.floats(-1e3, 1e3, width=32)))
    poison = data.draw(st.sampled_from([None, np.nan, np.inf, -np.inf]))
    if poison is not None:
        flat = values.reshape(-1)
        flat[data.draw(st.integers(0, flat.size - 1))] = poison
    valid, rejected = validate_replies([_reply({"w": values})], reference, 100)
    assert (len(valid), len(rejected)) == ((1, 0) if poison is None else (0, 1))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, other=shapes, n=st.one_of(st.integers(-5, 200), st.floats(-1, 1e6)))
def test_validation_rejects_any_other_shape_or_count(
    shape: tuple[int, ...], other: tuple[int, ...], n: float
) -> None:
    reference = {"w": Array(np.zeros(shape, np.float32))}
    valid, rejected = validate_replies(
        [_reply({"w": np.zeros(other, np.float32)}, n)], reference, 100
    )
    count_ok = float(n).is_integer() and 0 < n <= 100
    assert len(valid) == int(shape == other and count_ok)
    assert len(valid) + len(rejected) == 1


@settings(max_examples=40, deadline=None)
@given(batch=images)
def test_metrics_of_identical_batches(batch: np.ndarray) -> None:
    assert np.all(mse(batch, batch) == 0)
    assert np.all(psnr(batch, batch) == PSNR_CAP_DB)
    noisy = np.clip(batch + 0.1, 0, 1)
    np.testing.assert_allclose(psnr(batch, noisy), psnr(noisy, batch))
    assert np.all(psnr(batch, noisy) <= PSNR_CAP_DB)


@settings(max_examples=40, deadline=None)
@given(batch=images, seed=st.integers(0, 2**16))
def test_matching_undoes_any_permutation(batch: np.ndarray, seed: int) -> None:
    distinct = batch + np.arange(len(batch), dtype=np.float32)[:, None, None, None]  # no ties
    order = np.random.default_rng(seed).permutation(len(batch))
    labels = np.arange(len(batch))
    truth_idx, recon_idx = match_samples(distinct, distinct[order])
    np.testing.assert_array_equal(order[recon_idx], truth_idx)
    leakage = compute_leakage(distinct, labels, distinct[order], labels[order])
    assert leakage.label_accuracy == 1.0 and leakage.mse_mean == 0.0
