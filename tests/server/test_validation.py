"""Hostile or broken replies are rejected before aggregation, recorded, and counted."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from fedleak.clients.app import app as client_app
from fedleak.server.pipeline import AttackPipeline, AttackPlan
from fedleak.server.pool import create_pool
from fedleak.server.recorder import LeakageRecorder
from fedleak.server.strategy import CuriousStrategy
from fedleak.server.validation import TooFewValidRepliesError, ValidatingStrategy, check_structure
from fedleak.simulator.config.schema import ExperimentConfig
from fedleak.simulator.runtime.audit import AuditStore
from fedleak.simulator.runtime.results import RunPaths, read_leakage
from tests.flower_harness import LocalGrid
from tests.server.conftest import initial_arrays, model_spec, train_config

HOSTILE_NODE, HOSTILE_ROUND = 1001, 2


def _poisoning_client() -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        reply = client_app(msg, context)
        round_ = msg.content["config"]["server-round"]
        if context.node_id == HOSTILE_NODE and round_ == HOSTILE_ROUND:
            arrays = reply.content["arrays"]
            name = next(iter(arrays))
            poisoned = arrays[name].numpy().copy()
            poisoned.flat[0] = np.nan
            arrays[name] = Array(poisoned)
        return reply

    return app


class _DroppingGrid(LocalGrid):
    """The reference federation: the hostile node's round-2 update simply never arrives."""

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Any:
        messages = list(messages)
        round_ = messages[0].content["config"]["server-round"] if messages else 0
        replies = super().send_and_receive(messages, timeout=timeout)
        if round_ == HOSTILE_ROUND:
            return [r for r in replies if r.metadata.src_node_id != HOSTILE_NODE]
        return replies


def test_nan_reply_is_rejected_recorded_and_left_out(
    experiment: ExperimentConfig, tmp_path: Path
) -> None:
    cfg = experiment
    paths = RunPaths(tmp_path / "run")
    recorder = LeakageRecorder(paths, AuditStore(paths.audit))
    plan = AttackPlan(["analytic"], {}, 0, "cpu")
    pipeline = AttackPipeline(create_pool(cfg.pool), recorder, plan, model_spec(cfg))
    strategy = ValidatingStrategy(
        CuriousStrategy(FedAvg(fraction_evaluate=0.0), pipeline), pipeline
    )
    random.seed(0)
    curious = strategy.start(
        LocalGrid(_poisoning_client(), 3),
        initial_arrays(cfg),
        num_rounds=3,
        train_config=train_config(cfg, paths.audit),
    )
    pipeline.finish(60)
    recorder.close()

    random.seed(0)
    reference = FedAvg(fraction_evaluate=0.0).start(
        _DroppingGrid(client_app, 3),
        initial_arrays(cfg),
        num_rounds=3,
        train_config=train_config(cfg, tmp_path / "ref-audit"),
    )
    for name, value in reference.arrays.items():
        assert value.numpy().tobytes() == curious.arrays[name].numpy().tobytes(), name

    assert {r: len(v) for r, v in strategy.rejections.items()} == {1: 0, 2: 1, 3: 0}
    (rejection,) = strategy.rejections[HOSTILE_ROUND]
    assert rejection.node_id == HOSTILE_NODE and "non-finite" in rejection.reason
    rows = read_leakage(paths.leakage_jsonl)
    (row,) = [r for r in rows if r.status == "rejected"]
    assert (row.round, row.node_id) == (HOSTILE_ROUND, HOSTILE_NODE)
    assert len(rows) == 3 * 3  # the rejected update has its row, the others were attacked


def _reply(arrays: dict[str, np.ndarray], metrics: dict[str, Any], node: int = 5) -> Message:
    LocalGrid(client_app, 1)  # sets Flower's task identity for Message construction
    request = Message(RecordDict(), dst_node_id=node, message_type="train")
    content = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
            "metrics": MetricRecord(metrics),
        }
    )
    return Message(content, reply_to=request)


GLOBAL = {"w": np.zeros((3, 2), np.float32), "b": np.zeros(3, np.float32)}
GOOD = {"num-examples": 4, "train_loss": 0.5}


@pytest.mark.parametrize(
    ("arrays", "metrics", "reason"),
    [
        ({"w": np.zeros((2, 3), np.float32), "b": GLOBAL["b"]}, GOOD, "w is float32[2, 3]"),
        ({"w": GLOBAL["w"].astype(np.float64), "b": GLOBAL["b"]}, GOOD, "w is float64"),
        ({"w": GLOBAL["w"]}, GOOD, "missing ['b']"),
        ({**GLOBAL, "extra": GLOBAL["b"]}, GOOD, "extra ['extra']"),
        (GLOBAL, {"num-examples": -4, "train_loss": 0.5}, "outside 1..1000"),
        (GLOBAL, {"num-examples": 10**9, "train_loss": 0.5}, "outside 1..1000"),
        (GLOBAL, {"num-examples": 2.5, "train_loss": 0.5}, "outside 1..1000"),
        (GLOBAL, {"train_loss": 0.5, "other": 1.0}, "metrics ['other', 'train_loss']"),
    ],
)
def test_erroneous_reply_structure_is_rejected_with_its_reason(
    arrays: dict[str, np.ndarray], metrics: dict[str, Any], reason: str
) -> None:
    reference = {k: Array(v) for k, v in GLOBAL.items()}
    good = _reply(GLOBAL, GOOD, node=1)
    valid, rejected = check_structure([good, _reply(arrays, metrics, node=9)], reference, 1000)
    assert [v.message for v in valid] == [good]
    (rejection,) = rejected
    assert rejection.node_id == 9 and reason in rejection.reason, rejection.reason


def test_erroneous_error_reply_and_missing_records_are_rejected() -> None:
    reference = {k: Array(v) for k, v in GLOBAL.items()}
    LocalGrid(client_app, 1)
    request = Message(RecordDict(), dst_node_id=3, message_type="train")
    crashed = Message(Error(code=1, reason="client crashed"), reply_to=request)
    empty = Message(RecordDict(), reply_to=request)
    _, rejected = check_structure([crashed, empty], reference, 1000)
    assert [
        "client crashed" in rejected[0].reason,
        "records [], expected" in rejected[1].reason,
    ] == [
        True,
        True,
    ]


def test_erroneous_round_with_too_few_valid_replies_stops_clearly(
    experiment: ExperimentConfig, tmp_path: Path
) -> None:
    class Sink:
        def intercept(self, captured: Any) -> None: ...

    inner = CuriousStrategy(FedAvg(fraction_evaluate=0.0), Sink())
    strategy = ValidatingStrategy(inner, min_valid_replies=3)
    with pytest.raises(TooFewValidRepliesError, match=r"round 2: 2 valid replies.*node 1001"):
        random.seed(0)
        strategy.start(
            LocalGrid(_poisoning_client(), 3),
            initial_arrays(experiment),
            num_rounds=3,
            train_config=train_config(experiment, tmp_path / "audit"),
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int64])
@pytest.mark.parametrize("shape", [(), (1,), (7, 3), (2, 3, 4, 5)])
def test_fast_value_view_equals_flower_decoding(dtype: Any, shape: tuple[int, ...]) -> None:
    from fedleak.server.validation import _values

    values = np.random.default_rng(0).normal(size=shape).astype(dtype)
    array = Array(values)
    np.testing.assert_array_equal(_values(array), array.numpy().ravel())


def test_erroneous_non_finite_values_are_found_in_any_array() -> None:
    from fedleak.server.validation import validate_replies

    reference = {k: Array(v) for k, v in GLOBAL.items()}
    for bad in (np.nan, np.inf, -np.inf):
        poisoned = {"w": GLOBAL["w"].copy(), "b": GLOBAL["b"]}
        poisoned["w"][2, 1] = bad
        good = _reply(GLOBAL, GOOD, node=1)
        valid, rejected = validate_replies([good, _reply(poisoned, GOOD, node=4)], reference, 10)
        assert [v.node_id for v in valid] == [1]
        assert rejected[0].node_id == 4 and "non-finite values in ['w']" in rejected[0].reason
