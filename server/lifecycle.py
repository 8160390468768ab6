"""The run lifecycle both federations share: set up, train, drain the attacks, report.

:func:`fedleak.server.federation.run_federation` (FedAvg wrapped by the curious strategy) and
:func:`fedleak.server.secagg_federation.run_secagg_federation` (Flower's SecAgg+ workflow) differ
only in how the rounds are driven. Everything around the rounds is here: the model and data
of the experiment, the attack side (pool, recorder, audit store), the client setup every
train message carries, the training log with central evaluation and the progress line, the
final model, and the end of the run (drain the pool with its deadline, close the logs,
print the summary table) which happens however training ends.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from fedleak.server.attack_side import AttackSide, build_attack_side, experiment_model
from fedleak.server.evaluation import CentralEvaluator
from fedleak.simulator import record_keys as keys
from fedleak.simulator.config.client_setup import ClientSetup
from fedleak.simulator.config.schema import ExperimentConfig
from fedleak.simulator.data.datasets import DatasetSplits
from fedleak.simulator.models.architectures import ModelSpec
from fedleak.simulator.report.build import build_report
from fedleak.simulator.runtime.experiment_data import initial_model
from fedleak.simulator.runtime.results import JsonlAppender, RunPaths

console = Console(highlight=False, soft_wrap=True)

FINAL_MODEL = "final_model.pt"


def train_loss(metrics: Mapping[str, Any] | None) -> float:
    """The clients' aggregated training loss in a round's metrics, NaN when absent."""
    value = None if metrics is None else metrics.get(keys.TRAIN_LOSS)
    return float(value) if isinstance(value, int | float) else math.nan


@dataclass
class FederationRun:
    """One run's parts outside the rounds; build it with :meth:`start`."""

    cfg: ExperimentConfig
    paths: RunPaths
    spec: ModelSpec
    splits: DatasetSplits
    initial_state: dict[str, torch.Tensor]
    side: AttackSide
    setup: ClientSetup
    training_log: JsonlAppender

    @classmethod
    def start(cls, cfg: ExperimentConfig, paths: RunPaths) -> FederationRun:
        """The experiment's model and data, its attack side, client setup and training log."""
        spec, splits = experiment_model(cfg)
        state = initial_model(spec, cfg.seed, cfg.model.weights).state_dict()
        side = build_attack_side(cfg, paths, spec)
        setup = ClientSetup.from_experiment(cfg, audit_dir=str(paths.audit))
        log = JsonlAppender(paths.training_jsonl)
        return cls(cfg, paths, spec, splits, state, side, setup, log)

    def evaluator(
        self,
        trained_of: Callable[[int], int],
        train_loss_of: Callable[[int], float],
        *,
        rejected_of: Callable[[int], int] = lambda _: 0,
        trained_note: str = "",
    ) -> CentralEvaluator:
        """Central evaluation after each round, writing ``training.jsonl`` and the progress line.

        ``trained_of(round)``: the clients that trained; ``trained_note`` follows that count.
        """
        recorder, pipeline, rounds = self.side.recorder, self.side.pipeline, self.cfg.federation

        def progress(server_round: int, accuracy: float) -> None:
            best = recorder.best_psnr()
            console.print(
                f"round {server_round}/{rounds.rounds} | clients trained "
                f"{trained_of(server_round)}{trained_note} | attacks pending "
                f"{pipeline.pending} done {pipeline.recorded} | best PSNR "
                f"{'-' if math.isnan(best) else f'{best:.1f} dB'} | test acc {accuracy:.3f}"
            )

        return CentralEvaluator(
            self.spec,
            self.splits.test,
            rounds.loss,
            self.training_log,
            train_loss_of,
            progress,
            rejected_of=rejected_of,
        )

    def save_final_model(self, state: Mapping[str, torch.Tensor]) -> None:
        """The trained global model, as a state dict, in the run directory."""
        torch.save(state, Path(self.paths.root) / FINAL_MODEL)

    @contextmanager
    def finishing(self) -> Iterator[FederationRun]:
        """Train inside; on leaving, however training ended: drain, close, report."""
        try:
            yield self
        finally:
            self.finish()

    def finish(self) -> None:
        """Drain the attack pool (``pool.drain_timeout_s``), close the logs, print the report."""
        pipeline = self.side.pipeline
        console.print(f"training done; waiting for {pipeline.pending} attack(s) to finish ...")
        pipeline.finish(self.cfg.pool.drain_timeout_s, lambda p: console.print(p.line()))
        self.side.recorder.close()
        self.training_log.close()
        console.print(build_report(self.paths))
        console.print(f"results in {self.paths.root}")
