"""Attack pool throughput (attacks per minute) by worker count, and aggregation overhead with
the pool saturated (target ratio <= 1.05).

    python benchmarks/pool_throughput.py                  # 1 and 2 CPU workers
    python benchmarks/pool_throughput.py --gpu-workers 4  # plus fractional GPUs, where present

Jobs are real: FedSGD updates of the default experiment (digits, mlp, B=1) captured by the
curious strategy, attacked by the default attacks (analytic + inverting_gradients).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flwr.serverapp.strategy import FedAvg  # noqa: E402

from benchmarks.federation_overhead import measure_overhead  # noqa: E402
from benchmarks.tables import print_table  # noqa: E402
from fedleak.clients.app import app as client_app  # noqa: E402
from fedleak.server.capture import CapturedRound, decode, to_update  # noqa: E402
from fedleak.server.pool import AttackJob, create_pool, job_seed  # noqa: E402
from fedleak.server.strategy import CuriousStrategy  # noqa: E402
from fedleak.simulator.config.compose import load_experiment  # noqa: E402
from fedleak.simulator.config.schema import PoolConfig  # noqa: E402
from tests.flower_harness import LocalGrid  # noqa: E402
from tests.server.conftest import initial_arrays, model_spec, train_config  # noqa: E402


class _Keep:
    def __init__(self) -> None:
        self.rounds: list[CapturedRound] = []

    def intercept(self, captured: CapturedRound) -> None:
        self.rounds.append(captured)


def real_jobs(count: int, iterations: int) -> list[AttackJob]:
    """``count`` jobs from real intercepted FedSGD updates of the default experiment."""
    base = load_experiment(["pool=inprocess", "attack=analytic_ig", "federation.num_clients=4"])
    params = {"inverting_gradients": {"iterations": iterations}}
    cfg = replace(base, attack=replace(base.attack, params=params))
    spec = model_spec(cfg)
    sink = _Keep()
    rounds = max(1, count // (cfg.federation.num_clients * len(cfg.attack.names)) + 1)
    with TemporaryDirectory() as tmp:
        CuriousStrategy(FedAvg(fraction_evaluate=0.0), sink).start(
            LocalGrid(client_app, cfg.federation.num_clients),
            initial_arrays(cfg),
            num_rounds=rounds,
            train_config=train_config(cfg, Path(tmp)),
        )
    jobs = []
    for captured in sink.rounds:
        glob = decode(captured.global_arrays)
        for reply in captured.replies:
            update = to_update(
                captured,
                reply,
                global_params=glob,
                input_shape=spec.input_shape,
                num_classes=spec.num_classes,
                disclosed_labels=None,
            )
            for name in cfg.attack.names:
                seed = job_seed(0, update, name)
                jobs.append(AttackJob(name, params.get(name, {}), update, spec, seed, "auto"))
    return jobs[:count]


def throughput(jobs: list[AttackJob], pool_cfg: PoolConfig) -> tuple[float, int, set[str]]:
    """Seconds to run every job, how many succeeded, and the devices used."""
    pool = create_pool(pool_cfg)
    pool.worker_pids()  # type: ignore[attr-defined]  # actors up (torch imported) before timing
    start = time.perf_counter()
    for job in jobs:
        pool.submit(job)
    results = pool.drain(3600)
    elapsed = time.perf_counter() - start
    pool.shutdown()
    ok = sum(1 for r in results if not hasattr(r.outcome, "status"))
    return elapsed, ok, {r.device for r in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=48)
    parser.add_argument(
        "--iterations", type=int, default=200, help="inverting_gradients iterations"
    )
    parser.add_argument("--cpu-workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--gpu-workers", type=int, default=4, help="workers sharing one GPU")
    parser.add_argument("--overhead-repeats", type=int, default=20)
    args = parser.parse_args()
    logging.getLogger("flwr").setLevel(logging.ERROR)

    import ray
    import torch

    jobs = real_jobs(args.jobs, args.iterations)
    ray.init(include_dashboard=False, log_to_driver=False)
    rows = []
    configs = [PoolConfig(workers=w, num_cpus=1.0) for w in args.cpu_workers]
    if torch.cuda.is_available():
        share = 1.0 / args.gpu_workers
        configs.append(PoolConfig(workers=args.gpu_workers, num_cpus=1.0, num_gpus=share))
    for pool_cfg in configs:
        elapsed, ok, devices = throughput(jobs, pool_cfg)
        rows.append(
            (
                pool_cfg.workers,
                pool_cfg.num_cpus,
                pool_cfg.num_gpus,
                len(jobs),
                ok,
                f"{elapsed:.1f}",
                f"{60 * len(jobs) / elapsed:.1f}",
                ",".join(sorted(devices)),
            )
        )
    print(f"attacks: analytic + inverting_gradients ({args.iterations} it), digits/mlp, B=1")
    print_table(
        (
            "workers",
            "cpus/worker",
            "gpus/worker",
            "attacks",
            "ok",
            "wall_s",
            "attacks/min",
            "device",
        ),
        rows,
    )
    print()
    saturated = measure_overhead(repeats=args.overhead_repeats, workers=max(args.cpu_workers))
    print("aggregate_train with the pool saturated (same replies, interleaved calls):")
    print_table(
        ("workers", "calls", "plain_ms", "curious_ms", "ratio", "target", "attacks_queued"),
        [
            (
                saturated.workers,
                saturated.calls,
                f"{saturated.plain_ms:.3f}",
                f"{saturated.curious_ms:.3f}",
                f"{saturated.ratio:.3f}",
                "<=1.05",
                saturated.attacks_queued,
            )
        ],
    )


if __name__ == "__main__":
    main()
