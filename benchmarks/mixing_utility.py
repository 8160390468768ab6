"""Gradient mixing: leakage against utility in a federation that learns, and LeNet's recovery
map over batch size and channel count (Eloul et al., "Mixing gradients in neural networks as
a strategy to enhance privacy in federated learning", WACV 2024, figures 6 and 7).

Part 1 (figure 6) is a ``fedleak run -m`` sweep: a single dense layer (``model=linear``) on
``digits`` trained by 16 clients for 60 rounds of FedSGD (lr 1.0) with batches of B in
{2, 4, 6}, under each mixing strategy: cross-entropy with random labels (``defense=none``),
cross-entropy with equal labels (``defense=equal_labels``), MSE after softmax
(``defense=mse_loss``) and both (``defense=[mse_loss,equal_labels]``). A quarter of the
updates of rounds 1, 30 and 60 is attacked by direct batch inversion (eq. 8), inverting
gradients and DLG. Per run: the final test accuracy, and the recovery rate, the share of an
update's samples whose best reconstruction has AVD < 0.6 (eq. 13), averaged over the attacked
updates. The paper's claim: mixing cuts recovery while accuracy stays.

Part 2 (figure 7) calls the attacks directly: DLG's sigmoid LeNet with ``width`` channels,
untrained (seeded), one FedSGD update of a random batch of B samples of ``digits`` or ``lfw``,
attacked by DLG (L-BFGS, as the paper) and by the cosine objective with plain Adam; recovery
rate per (data set, width, B), best attack per trial, mean over trials. The paper's claim:
wider LeNets leak more.

    python benchmarks/mixing_utility.py                  # both parts, 2 seeds, 3 trials
    python benchmarks/mixing_utility.py --subset --jobs 2   # the CPU subset (docstring)
    python benchmarks/mixing_utility.py --part map --widths 1 2 4 --batch-sizes 1 4 8

``--subset``: part 1 with B in {2, 4} and one seed, part 2 with widths {1, 4, 24}, B in
{1, 4} and 2 trials. On 8x8 digits LeNet's gradient has far more equations than unknowns
from 4 channels on, so the map's boundary sits at 1-2 channels there. Exits 1 when the
measurement is broken (a failed job, a run without attacked updates); a claim of the paper
that does not replicate is printed as "does not hold here", not an error.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.client_step import one_step_update  # noqa: E402
from benchmarks.sweep_problems import split_settled  # noqa: E402
from fedleak import simulator  # noqa: E402, F401  (torchvision shim before anything imports it)
from fedleak.attacks import create_attack, execute_attack  # noqa: E402
from fedleak.attacks.types import Reconstruction  # noqa: E402
from fedleak.simulator.metrics.leakage import compute_leakage  # noqa: E402
from fedleak.simulator.runtime.experiment_data import cached_splits, initial_model, model_spec_for  # noqa: E402
from fedleak.simulator.sweep.summary import mean_std  # noqa: E402

STRATEGIES = {
    "none": "CE random",
    "equal_labels": "CE equal",
    "mse_loss": "MSE random",
    "[mse_loss,equal_labels]": "MSE equal",
}
FEDERATION = [
    "name=mixing_utility",
    "dataset=digits",
    "model=linear",
    "federation.num_clients=16",
    "federation.rounds=60",
    "federation.lr=1.0",
    "attack.names=[direct_batch,inverting_gradients,dlg]",
    "attack.rounds=[1,30,60]",
    "attack.client_fraction=0.25",
    "pool=inprocess",
]
ACCURACY_SLACK = 0.05
LR = 0.1
"""The FedSGD step of the map's updates."""
"""'Accuracy stays': a mixing strategy ends within this of cross-entropy with random labels."""


@dataclass(frozen=True)
class FederationRun:
    """One run of part 1: strategy, batch size, seed, final accuracy, mean recovery rate."""

    strategy: str
    batch: int
    seed: int
    accuracy: float
    recovery: float


def sweep(args: argparse.Namespace) -> tuple[Path, float]:
    """Part 1's ``fedleak run -m --jobs N``; (sweep directory, wall seconds)."""
    overrides = [
        *FEDERATION,
        "defense=" + ",".join(STRATEGIES),
        f"federation.batch_size={','.join(map(str, args.fed_batch_sizes))}",
        f"seed=range(0,{args.seeds})",
        f"output_dir={args.output_dir}",
    ]
    command = [sys.executable, "-m", "fedleak.simulator.cli", "run", "-m", "--jobs", str(args.jobs)]
    start = time.monotonic()
    proc = subprocess.run([*command, *overrides], capture_output=True, text=True, cwd=ROOT)
    found = [line for line in proc.stdout.splitlines() if line.startswith("fedleak: sweep of")]
    if not found:
        raise RuntimeError(f"the sweep did not start:\n{proc.stdout[-2000:]}{proc.stderr}")
    return Path(found[0].rsplit(" -> ", 1)[1]), time.monotonic() - start


def _override(overrides: list[str], key: str) -> str:
    return next(o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key)


Combination = tuple[str, int, int]
"""(mixing strategy, batch size, seed): what one job of part 1 measures."""


def _combination(job: dict[str, Any]) -> Combination:
    return (
        STRATEGIES[_override(job["overrides"], "defense")],
        int(_override(job["overrides"], "federation.batch_size")),
        int(job["seed"]),
    )


def load_federation_runs(
    sweep_dir: Path,
) -> tuple[list[FederationRun], list[tuple[str, Combination]]]:
    """Part 1's finished runs: accuracy after the last round, recovery over attacked updates;
    and the jobs that did not finish ok or were not attacked, each with its combination."""
    runs: list[FederationRun] = []
    problems: list[tuple[str, Combination]] = []
    for job_file in sorted(sweep_dir.glob("job-*/job.json")):
        job = json.loads(job_file.read_text(encoding="utf-8"))
        name = f"{sweep_dir.name}/{job_file.parent.name}"
        if job.get("status") != "ok":
            problems.append((f"{name}: job status {job.get('status')!r}", _combination(job)))
            continue
        run_dir = sweep_dir / job["run_dir"]
        training = [json.loads(line) for line in (run_dir / "training.jsonl").open()]
        best: dict[tuple[int, int], float] = defaultdict(float)
        for line in (run_dir / "leakage.jsonl").open():
            row = json.loads(line)
            rate = row["recovery_rate"] if row["status"] == "ok" else None
            key = (row["round"], row["node_id"])
            best[key] = max(best[key], rate if rate is not None and rate == rate else 0.0)
        if not best:
            problems.append((f"{name}: no attacked update", _combination(job)))
            continue
        strategy, batch, seed = _combination(job)
        runs.append(
            FederationRun(
                strategy=strategy,
                batch=batch,
                seed=seed,
                accuracy=float(training[-1]["test_accuracy"]),
                recovery=float(np.mean(list(best.values()))),
            )
        )
    return runs, problems


def print_federation_table(runs: list[FederationRun]) -> None:
    """Accuracy | recovery rate per strategy (rows) and batch size (columns), seed means."""
    batches = sorted({r.batch for r in runs})
    header = f"{'strategy':<11}" + "".join(f"{'B=' + str(b) + ' acc | rec':>20}" for b in batches)
    print(header)
    print("-" * len(header))
    for name in STRATEGIES.values():
        line = f"{name:<11}"
        for b in batches:
            cell = [r for r in runs if r.strategy == name and r.batch == b]
            acc, rec = (
                mean_std([r.accuracy for r in cell])[0],
                mean_std([r.recovery for r in cell])[0],
            )
            line += f"{acc:>13.3f} | {rec:<4.2f}"
        print(line)


def mixing_verdicts(runs: list[FederationRun]) -> list[tuple[str, bool, str]]:
    """Per mixing strategy: recovery below CE random at every B, accuracy within the slack."""
    verdicts = []
    batches = sorted({r.batch for r in runs})

    def cell(name: str, b: int) -> tuple[float, float]:
        chosen = [r for r in runs if r.strategy == name and r.batch == b]
        return mean_std([r.accuracy for r in chosen])[0], mean_std([r.recovery for r in chosen])[0]

    for name in list(STRATEGIES.values())[1:]:
        lower, kept, detail = True, True, []
        for b in batches:
            (base_acc, base_rec), (acc, rec) = cell("CE random", b), cell(name, b)
            lower &= rec < base_rec
            kept &= acc >= base_acc - ACCURACY_SLACK
            detail.append(
                f"B={b}: rec {rec:.2f} vs {base_rec:.2f}, acc {acc:.3f} vs {base_acc:.3f}"
            )
        claim = f"{name} cuts recovery below CE random while accuracy stays (-{ACCURACY_SLACK})"
        verdicts.append((claim, lower and kept, "; ".join(detail)))
    return verdicts


MAP_ATTACKS = {
    "dlg": {},
    "inverting_gradients": {"tv_weight": 0.0, "signed_gradients": False, "lr_decay": False},
}
"""Part 2's attacks: DLG's L-BFGS (the paper's optimiser) and the cosine objective with plain
Adam; a sample counts as recovered when either attack recovers it."""


def lenet_recovery(dataset: str, width: int, batch: int, trials: int, iterations: int) -> float:
    """Mean recovery rate (AVD < 0.6, best of :data:`MAP_ATTACKS`) on an untrained sigmoid
    LeNet of ``width`` channels, over ``trials`` random batches."""
    splits = cached_splits(dataset, "data", 0, 0.2)
    train = splits.train
    spec = model_spec_for("lenet", train, width=width, activation=None, init="default")
    rates = []
    for trial in range(trials):
        rng = np.random.default_rng(1000 * trial + batch)
        idx = rng.choice(len(train.labels), batch, replace=False)
        x, y = torch.from_numpy(train.inputs[idx]), torch.from_numpy(train.labels[idx])
        model = initial_model(spec, seed=trial)
        update = one_step_update(model, x, y, LR, train.num_classes)
        best = 0.0
        for name, params in MAP_ATTACKS.items():
            attack = create_attack(name, {**params, "iterations": iterations})
            out = execute_attack(attack, model, update, device=torch.device("cpu"), seed=trial)
            if isinstance(out, Reconstruction):  # a failed attack recovers nothing
                leaked = compute_leakage(x.numpy(), y.numpy(), out.inputs, out.labels)
                best = max(best, leaked.recovery_rate)
        rates.append(best)
    return float(np.mean(rates))


def lenet_map(args: argparse.Namespace) -> dict[tuple[str, int, int], float]:
    """Recovery rate per (data set, width, batch size), printed as one table per data set."""
    # A LeNet this small gains nothing from threads, and on a busy machine they spin.
    torch.set_num_threads(1)
    rates = {}
    for dataset in args.datasets:
        header = f"{dataset:<8} {'width':>5}" + "".join(
            f"{'B=' + str(b):>8}" for b in args.batch_sizes
        )
        print(header)
        print("-" * len(header))
        for width in args.widths:
            line = f"{'':<8} {width:>5}"
            for b in args.batch_sizes:
                rates[(dataset, width, b)] = lenet_recovery(
                    dataset, width, b, args.trials, args.iterations
                )
                line += f"{rates[(dataset, width, b)]:>8.2f}"
            print(line, flush=True)
    return rates


def width_verdicts(rates: dict[tuple[str, int, int], float]) -> list[tuple[str, bool, str]]:
    """Per data set: the recovery rate averaged over B never falls as LeNet gets wider, and the
    widest leaks more than the narrowest."""
    verdicts = []
    for dataset in sorted({d for d, _, _ in rates}):
        widths = sorted({w for d, w, _ in rates if d == dataset})
        means = [
            float(np.mean([r for (d, w, _), r in rates.items() if (d, w) == (dataset, wid)]))
            for wid in widths
        ]
        holds = all(a <= b for a, b in itertools.pairwise(means)) and means[-1] > means[0]
        detail = ", ".join(f"width {w}: {m:.2f}" for w, m in zip(widths, means, strict=True))
        verdicts.append((f"wider LeNets leak more ({dataset}, mean over B)", holds, detail))
    return verdicts


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "federation", "map"], default="all")
    parser.add_argument("--subset", action="store_true", help="the CPU subset (docstring)")
    parser.add_argument("--jobs", type=int, default=1, help="sweep jobs at once (part 1)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--fed-batch-sizes", nargs="+", type=int, default=[2, 4, 6])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "runs")
    parser.add_argument(
        "--sweep-dir", type=Path, nargs="+", help="summarise these part-1 sweeps, run nothing"
    )
    parser.add_argument("--datasets", nargs="+", default=["digits", "lfw"])
    parser.add_argument("--widths", nargs="+", type=int, default=[1, 2, 4, 8, 12, 24])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 2, 4, 6])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=300, help="per attack of part 2")
    args = parser.parse_args()
    if args.subset:
        args.seeds, args.fed_batch_sizes = 1, [2, 4]
        args.widths, args.batch_sizes, args.trials = [1, 4, 24], [1, 4], 2
    return args


def main() -> int:
    """Run the parts, print their tables and the paper's claims with a verdict each.

    Exit 1 only when the measurement is broken (a job failed, a run had no attacked update,
    a map cell has no value); a claim of the paper that does not replicate here is printed
    as such and is not an error.
    """
    args = parse_args()
    verdicts: list[tuple[str, bool, str]] = []
    problems: list[str] = []
    if args.part in ("all", "federation"):
        sweep_dirs = args.sweep_dir
        if sweep_dirs is None:
            sweep_dir, wall = sweep(args)
            print(f"part 1: sweep with --jobs {args.jobs}: {wall:.0f} s ({sweep_dir})")
            sweep_dirs = [sweep_dir]
        runs: list[FederationRun] = []
        failures: list[tuple[str, Combination]] = []
        for sweep_dir in sweep_dirs:  # a grid run in parts is summarised together
            found, failed = load_federation_runs(sweep_dir)
            runs += found
            failures += failed
        broken, settled = split_settled(failures, [(r.strategy, r.batch, r.seed) for r in runs])
        for message in settled:
            print(f"failed, then run again ok: {message}")
        problems += broken + ([] if runs else ["part 1: no finished job"])
        print_federation_table(runs)
        verdicts += mixing_verdicts(runs)
    if args.part in ("all", "map"):
        start = time.monotonic()
        rates = lenet_map(args)
        print(
            f"part 2: {len(rates)} cells x {args.trials} trials in {time.monotonic() - start:.0f} s"
        )
        verdicts += width_verdicts(rates)
        problems += [f"map cell {key}: no value" for key, r in rates.items() if math.isnan(r)]
    for claim, holds, detail in verdicts:
        print(f"{'holds' if holds else 'does not hold here':>18}: {claim} [{detail}]")
    for problem in problems:
        print(f"measurement broken: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
