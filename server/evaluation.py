"""Centralised evaluation on the held-out test split, training log, and per-round progress."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import torch
from flwr.app import ArrayRecord, MetricRecord

from fedleak.attacks.losses import training_loss
from fedleak.simulator.data.datasets import ArrayDataset
from fedleak.simulator.models.architectures import ModelSpec, build_model
from fedleak.simulator.runtime.results import JsonlAppender


class CentralEvaluator:
    """``evaluate_fn`` for ``Strategy.start``: test loss and accuracy of the global model.

    Each call appends one row to ``training.jsonl`` (round, train loss, test loss and
    accuracy, replies rejected) and prints the progress line produced by ``progress``.
    """

    def __init__(
        self,
        spec: ModelSpec,
        test: ArrayDataset,
        loss: str,
        log: JsonlAppender,
        train_loss_of: Callable[[int], float],
        progress: Callable[[int, float], None],
        rejected_of: Callable[[int], int] = lambda _: 0,
    ) -> None:
        self.spec = spec
        self.test = test
        self.loss = loss
        self.log = log
        self.train_loss_of = train_loss_of
        self.progress = progress
        self.rejected_of = rejected_of
        self.rows: list[dict[str, float]] = []

    @torch.no_grad()
    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = build_model(self.spec)
        model.load_state_dict(arrays.to_torch_state_dict())
        model.eval()
        x = torch.from_numpy(self.test.inputs)
        y = torch.from_numpy(self.test.labels)
        logits = model(x)
        test_loss = float(training_loss(self.loss, logits, y))
        accuracy = float((logits.argmax(dim=1) == y).float().mean())
        train_loss = self.train_loss_of(server_round) if server_round > 0 else math.nan
        row = {
            "round": server_round,
            "train_loss": train_loss,
            "test_loss": test_loss,
            "test_accuracy": accuracy,
            "rejected": self.rejected_of(server_round),
        }
        self.rows.append(row)
        self.log.append(
            json.dumps(
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            )
        )
        if server_round > 0:
            self.progress(server_round, accuracy)
        return MetricRecord({"test_loss": test_loss, "test_accuracy": accuracy})
