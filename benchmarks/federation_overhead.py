"""Median ``aggregate_train`` time with the curious plugin versus plain FedAvg (target <= 1.05).

The strategies aggregate the *same* replies of each round, interleaved call by call, so the
ratio measures only what a wrapper adds, while the attack pool is busy in the background as
in a real run. The curious plugin (capturing, handing off) is the measured claim; the honest
server's reply validation (``ValidatingStrategy``: structure and finiteness checks) is
reported beside it, since a fedleak server runs both.

    python benchmarks/federation_overhead.py                # default experiment, Ray pool
    python benchmarks/federation_overhead.py --model cnn    # a larger model
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flwr.app import ArrayRecord, Message  # noqa: E402
from flwr.serverapp.strategy import FedAvg, Strategy  # noqa: E402

from benchmarks.tables import print_table  # noqa: E402
from fedleak.clients.app import app as client_app  # noqa: E402
from fedleak.server.pipeline import AttackPipeline, AttackPlan  # noqa: E402
from fedleak.server.pool import create_pool  # noqa: E402
from fedleak.server.recorder import LeakageRecorder  # noqa: E402
from fedleak.server.strategy import CuriousStrategy  # noqa: E402
from fedleak.server.validation import ValidatingStrategy  # noqa: E402
from fedleak.simulator.config.compose import load_experiment  # noqa: E402
from fedleak.simulator.config.schema import ExperimentConfig  # noqa: E402
from fedleak.simulator.runtime.audit import AuditStore  # noqa: E402
from fedleak.simulator.runtime.results import RunPaths, read_leakage  # noqa: E402
from tests.flower_harness import LocalGrid  # noqa: E402
from tests.server.conftest import initial_arrays, model_spec, train_config  # noqa: E402


def collect_rounds(
    cfg: ExperimentConfig, audit_dir: Path
) -> list[tuple[int, ArrayRecord, list[Message]]]:
    """Run the federation once and keep every round's global arrays and train replies."""
    kept: list[tuple[int, ArrayRecord, list[Message]]] = []

    class Keep(FedAvg):
        def aggregate_train(self, server_round, replies):  # type: ignore[no-untyped-def]
            replies = list(replies)
            kept.append((server_round, self._arrays, replies))
            return super().aggregate_train(server_round, replies)

        def configure_train(self, server_round, arrays, config, grid):  # type: ignore[no-untyped-def]
            self._arrays = arrays
            return super().configure_train(server_round, arrays, config, grid)

    Keep(fraction_evaluate=0.0).start(
        LocalGrid(client_app, cfg.federation.num_clients),
        initial_arrays(cfg),
        num_rounds=cfg.federation.rounds,
        train_config=train_config(cfg, audit_dir),
    )
    return kept


@dataclass(frozen=True)
class Overhead:
    """Medians of ``aggregate_train`` over the same replies, and the pool's state."""

    model: str
    params: int
    clients: int
    calls: int
    pool: str
    workers: int
    plain_ms: float
    curious_ms: float
    validating_ms: float
    attacks_queued: int
    attacks_done: int

    @property
    def ratio(self) -> float:
        return self.curious_ms / self.plain_ms

    @property
    def validation_ratio(self) -> float:
        return self.validating_ms / self.plain_ms


def measure_overhead(
    model: str = "mlp",
    rounds: int = 10,
    clients: int = 4,
    repeats: int = 20,
    pool: str = "ray",
    workers: int = 1,
    settle_s: float = 0.05,
) -> Overhead:
    """Time plain FedAvg and CuriousStrategy(FedAvg) on each round's replies, interleaved.

    Every curious call queues one attack per update and attack, so with enough rounds and
    repeats the pool is saturated (``attacks_queued`` at the end).
    """
    logging.getLogger("flwr").setLevel(logging.ERROR)
    pool_group = "local" if pool == "ray" else "inprocess"
    base = load_experiment(
        [f"model={model}", f"pool={pool_group}", f"pool.workers={workers}", "attack=analytic_ig"]
    )
    with TemporaryDirectory() as tmp:
        cfg = replace(
            base,
            output_dir=tmp,
            federation=replace(base.federation, rounds=rounds, num_clients=clients),
        )
        paths = RunPaths(Path(tmp) / "run")
        kept = collect_rounds(cfg, paths.audit)
        if pool == "ray":
            import ray

            if not ray.is_initialized():
                ray.init(include_dashboard=False, log_to_driver=False)
        recorder = LeakageRecorder(paths, AuditStore(paths.audit))
        plan = AttackPlan(cfg.attack.names, cfg.attack.params, cfg.seed, "cpu", max_pending=10**6)
        pipeline = AttackPipeline(create_pool(cfg.pool), recorder, plan, model_spec(cfg))
        strategies: dict[str, Strategy] = {
            "plain": FedAvg(fraction_evaluate=0.0),
            "curious": CuriousStrategy(FedAvg(fraction_evaluate=0.0), pipeline),
            "validating": ValidatingStrategy(FedAvg(fraction_evaluate=0.0)),
        }
        grid = LocalGrid(client_app, clients)
        config = train_config(cfg, paths.audit)
        times: dict[str, list[float]] = {name: [] for name in strategies}
        random.seed(0)
        for _ in range(repeats):
            for server_round, arrays, replies in kept:
                for name in random.sample(list(strategies), len(strategies)):  # vary the order
                    strategy = strategies[name]
                    strategy.configure_train(server_round, arrays, config, grid)
                    start = time.perf_counter()
                    strategy.aggregate_train(server_round, iter(replies))
                    times[name].append(time.perf_counter() - start)
                    # let the pipeline submit before the next timed call, so neither strategy
                    # is charged for the other's background decoding
                    pipeline.wait_until_submitted()
                    time.sleep(settle_s)  # Ray's driver threads finish shipping the jobs
        queued = pipeline.pool.pending
        pipeline.finish(timeout_s=5.0)
        recorder.close()
        done = sum(r.status == "ok" for r in read_leakage(paths.leakage_jsonl))
    return Overhead(
        model=model,
        params=sum(a.numpy().size for a in kept[0][1].values()),
        clients=clients,
        calls=len(times["plain"]),
        pool=pool,
        workers=workers,
        plain_ms=statistics.median(times["plain"]) * 1e3,
        curious_ms=statistics.median(times["curious"]) * 1e3,
        validating_ms=statistics.median(times["validating"]) * 1e3,
        attacks_queued=queued,
        attacks_done=done,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--repeats", type=int, default=20, help="timed calls per round and strategy"
    )
    parser.add_argument("--pool", default="ray", choices=["ray", "inprocess"])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--settle-s", type=float, default=0.05, help="pause after each timed call")
    args = parser.parse_args()
    result = measure_overhead(
        args.model, args.rounds, args.clients, args.repeats, args.pool, args.workers, args.settle_s
    )
    header = (
        "model", "params", "clients", "calls", "pool", "workers", "plain_ms", "curious_ms",
        "ratio", "target", "validating_ms", "validation_ratio", "attacks_queued", "attacks_done",
    )  # fmt: skip
    row = (
        result.model, result.params, result.clients, result.calls, result.pool, result.workers,
        f"{result.plain_ms:.3f}", f"{result.curious_ms:.3f}", f"{result.ratio:.3f}", "<=1.05",
        f"{result.validating_ms:.3f}", f"{result.validation_ratio:.3f}",
        result.attacks_queued, result.attacks_done,
    )  # fmt: skip
    print_table(header, [row])


if __name__ == "__main__":
    main()
