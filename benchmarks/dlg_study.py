"""The DLG / iDLG sensitivity study as a fedleak sweep: initialisation, activation, batch size,
pruning and architecture against reconstruction PSNR, on natural RGB photographs.

The study (Z. Li, "Attacking Gradients: reconstructing training data", IP Paris project
slides, 2024, on Zhu et al., "Deep Leakage from Gradients", NeurIPS 2019, arXiv:1906.08935,
and Zhao et al., "iDLG: Improved Deep Leakage from Gradients", arXiv:2001.02610) ran a Hydra
sweep of 960 runs: seeds x {McMahan CNN, ResNet-18} x B {1, 2, 4, 8, 16} x init {Xavier,
Kaiming} x {normal, uniform} x activation {ReLU, Sigmoid} x pruning {none, small-magnitude},
attacked with Adam (lr 0.1), a cosine-similarity gradient loss and 500 iterations, labels
from iDLG. Here every combination is one ``fedleak run`` of one client and one FedSGD round on
``dataset=photos`` (32x32 crops of scikit-image's colour photographs), attacked by
``inverting_gradients`` with that recipe (no total variation, plain Adam, no step decay), and
the sweep is ``fedleak run -m --jobs N`` (or Ray jobs with ``--ray-address``).

    # the full study (2 x 4 x 2 x 5 x 2 x 3 seeds = 480 runs): a GPU box or a Ray cluster
    python benchmarks/dlg_study.py --jobs 8
    # the documented subset run on a 2-core CPU: McMahan CNN, uniform inits, B in {1, 4},
    # no pruning, one seed (8 runs), once with 1 job and once with 2 jobs at a time
    python benchmarks/dlg_study.py --subset --jobs 1 2
    python benchmarks/dlg_study.py --sweep-dir runs/dlg_study/sweep-A sweep-B   # re-summarise

A subset may be run in parts (a grid, then a pruning slice at one batch size, then a few
ResNet-18 runs) and summarised together with ``--sweep-dir``: every verdict compares only
runs whose other factors match (:mod:`benchmarks.dlg_verdicts`). docs/results.md records the
subset run on a 2-core CPU and its numbers.

It prints the sweep's wall time for each ``--jobs`` value, the PSNR table (mean ± std over
seeds, one column per batch size) and each conclusion of the study: "holds", "does not hold
here" (the study's finding did not replicate on these runs) or "not measured" (the runs lack
the factor). ``--batchnorm`` adds the study's BatchNorm comparison (ResNet-18 gradients taken
in train vs eval mode, attacked in the same mode; fedleak's clients always train in train
mode, so this part calls the attack directly). Exits 1 only when the measurement is broken: a
job failed or an attack gave no PSNR; a conclusion that does not replicate is a result.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.dlg_verdicts import (  # noqa: E402
    FAILS,
    HOLDS,
    UNMEASURED,
    Run,
    Verdict,
    study_verdicts,
)
from benchmarks.sweep_problems import split_settled  # noqa: E402
from fedleak.simulator.sweep.summary import mean_std  # noqa: E402

ATTACK_PARAMS: dict[str, float | int | bool] = {
    "iterations": 500,
    "lr": 0.1,
    "tv_weight": 0.0,
    "signed_gradients": False,
    "lr_decay": False,
    "restarts": 1,
    "time_budget_s": 7200.0,
}
"""The study's attack: Adam at lr 0.1 on the cosine gradient distance, 500 iterations (all of
them: ResNet-18 on a CPU needs more than the attack's default time budget for them)."""
ATTACK = ["attack=inverting_gradients"] + [
    f"++attack.params.inverting_gradients.{k}={str(v).lower()}" for k, v in ATTACK_PARAMS.items()
]
FEDERATION = [
    "name=dlg_study",
    "dataset=photos",
    "federation.num_clients=1",
    "federation.rounds=1",
    "pool=inprocess",
    # the study's attack on ResNet-18 takes ~2 min on an idle CPU and over 5 min on a loaded
    # one: the run waits for it instead of recording a timeout after the default 300 s
    "pool.drain_timeout_s=7200",
]
FULL = {
    "models": ["cnn", "resnet18"],
    "inits": ["xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform"],
    "activations": ["relu", "sigmoid"],
    "batch_sizes": [1, 2, 4, 8, 16],
    "prune": ["none", "0.2"],
    "seeds": 3,
}
SUBSET = {
    "models": ["cnn"],
    "inits": ["xavier_uniform", "kaiming_uniform"],
    "activations": ["relu", "sigmoid"],
    "batch_sizes": [1, 4],
    "prune": ["none"],
    "seeds": 1,
}


def sweep_overrides(args: argparse.Namespace) -> list[str]:
    """The ``fedleak run -m`` overrides of the grid (pruning as a second defense value)."""
    prune = ["none" if p == "none" else "prune" for p in args.prune]
    overrides = [
        *FEDERATION,
        *ATTACK,
        f"model={','.join(args.models)}",
        f"model.init={','.join(args.inits)}",
        f"model.activation={','.join(args.activations)}",
        f"federation.batch_size={','.join(str(b) for b in args.batch_sizes)}",
        f"defense={','.join(prune)}",
        f"seed=range(0,{args.seeds})",
    ]
    fractions = sorted({p for p in args.prune if p != "none"})
    if fractions:
        overrides.append(f"defense.prune.fraction={','.join(fractions)}")
    return [*overrides, f"output_dir={args.output_dir}"]


def run_sweep(overrides: list[str], jobs: int, ray_address: str | None) -> tuple[Path, float]:
    """``fedleak run -m --jobs N``; (its sweep directory, wall seconds)."""
    command = [sys.executable, "-m", "fedleak.simulator.cli", "run", "-m", "--jobs", str(jobs)]
    if ray_address:
        command += ["--ray-address", ray_address]
    start = time.monotonic()
    proc = subprocess.run([*command, *overrides], capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - start
    found = [line for line in proc.stdout.splitlines() if line.startswith("fedleak: sweep of")]
    if not found:
        raise RuntimeError(f"the sweep did not start:\n{proc.stdout[-2000:]}{proc.stderr}")
    return Path(found[0].rsplit(" -> ", 1)[1]), wall


def _value(overrides: Iterable[str], key: str, default: str) -> str:
    values = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == key]
    return values[-1] if values else default


def _run_of(job: dict[str, Any], psnr: float) -> Run:
    o = job["overrides"]
    pruned = _value(o, "defense", "none") == "prune"
    return Run(
        model=_value(o, "model", "mlp"),
        init=_value(o, "model.init", "default"),
        activation=_value(o, "model.activation", "relu"),
        batch=int(_value(o, "federation.batch_size", "1")),
        prune=_value(o, "defense.prune.fraction", "0.9") if pruned else "none",
        seed=int(job["seed"]),
        psnr=psnr,
    )


Problem = tuple[str, Run]
"""A job that makes the measurement broken, named, and its factors (PSNR NaN)."""


def load_runs(sweep_dir: Path) -> tuple[list[Run], list[Problem], list[str]]:
    """Every job of the sweep with its factors and the attack's mean PSNR (NaN: none).

    Returns the runs, the problems that make the measurement broken (a job that failed, a
    run whose attack produced no PSNR; each one named) and the jobs that did not finish
    because the sweep was stopped or is still going (not run, not an error).
    """
    runs, problems, interrupted = [], [], []
    for job_file in sorted(sweep_dir.glob("job-*/job.json")):
        job = json.loads(job_file.read_text(encoding="utf-8"))
        name = f"{sweep_dir.name}/{job_file.parent.name}"
        if job.get("status") in ("interrupted", "running"):  # stopped, or still going
            interrupted.append(name)
            continue
        if job.get("status") != "ok" or not job.get("run_dir"):
            problems.append((f"{name}: job status {job.get('status')!r}", _run_of(job, math.nan)))
            continue
        rows = [json.loads(line) for line in (sweep_dir / job["run_dir"] / "leakage.jsonl").open()]
        psnrs = [r["psnr_mean"] for r in rows if r["status"] == "ok" and r["psnr_mean"]]
        runs.append(_run_of(job, float(np.mean(psnrs)) if psnrs else math.nan))
        if not psnrs:
            reasons = "; ".join(f"{r['status']}: {r['reason'][:80]}" for r in rows) or "no row"
            problems.append((f"{name}: no PSNR ({reasons})", runs[-1]))
    return runs, problems, interrupted


def unsettled(runs: list[Run], problems: list[Problem]) -> tuple[list[str], list[str]]:
    """(problems no other run settles, problems whose combination ran ok in another job)."""
    finished = [replace(r, psnr=0.0) for r in runs if not math.isnan(r.psnr)]
    return split_settled(((m, replace(run, psnr=0.0)) for m, run in problems), finished)


def print_table(runs: list[Run]) -> None:
    """PSNR (dB), mean ± std over seeds: one row per (model, activation, init, prune)."""
    batches = sorted({r.batch for r in runs})
    cells: dict[tuple[str, str, str, str], dict[int, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in runs:
        cells[(r.model, r.activation, r.init, r.prune)][r.batch].append(r.psnr)
    header = f"{'model':<9} {'act':<8} {'init':<16} {'prune':<6}" + "".join(
        f"{'B=' + str(b):>14}" for b in batches
    )
    print(header)
    print("-" * len(header))
    for key in sorted(cells):
        line = f"{key[0]:<9} {key[1]:<8} {key[2]:<16} {key[3]:<6}"
        for b in batches:
            mean, std = mean_std(cells[key][b])
            line += f"{'-':>14}" if math.isnan(mean) else f"{mean:>8.1f} ± {std:<4.1f}"
        print(line)


def batchnorm_verdict(iterations: int, seeds: int, batch: int = 2) -> tuple[Verdict, list[str]]:
    """ResNet-18's gradient taken in train vs eval mode, each attacked in the mode it was taken.

    The study compared ``.train()`` and ``.eval()``; with train-mode BatchNorm every sample's
    output depends on the batch's statistics, which the gradient does not reveal. Returns the
    verdict and the attacks that failed (a broken measurement, not a finding).
    """
    import torch

    from benchmarks.client_step import one_step_update
    from fedleak.attacks import create_attack, execute_attack
    from fedleak.attacks.types import Reconstruction
    from fedleak.simulator.metrics.leakage import compute_leakage
    from fedleak.simulator.runtime.experiment_data import (
        cached_splits,
        initial_model,
        model_spec_for,
    )

    claim = "BatchNorm: eval-mode gradients leak more than train-mode ones (ResNet-18)"
    splits = cached_splits("photos", "data", 0, 0.2)
    spec = model_spec_for("resnet18", splits.train, width=None, activation=None, init="default")
    params = {**ATTACK_PARAMS, "iterations": iterations}
    psnr: dict[str, list[float]] = {"train": [], "eval": []}
    failures = []
    for seed in range(seeds):
        idx = np.random.default_rng(seed).choice(len(splits.train.labels), batch, replace=False)
        x, y = (
            torch.from_numpy(splits.train.inputs[idx]),
            torch.from_numpy(splits.train.labels[idx]),
        )
        for mode, values in psnr.items():
            model = initial_model(spec, seed)
            model.train(mode == "train")
            update = one_step_update(model, x, y, 0.1, splits.train.num_classes)
            attack = create_attack("inverting_gradients", params)
            out = execute_attack(attack, model, update, device=torch.device("cpu"), seed=seed)
            if isinstance(out, Reconstruction):
                leak = compute_leakage(x.numpy(), y.numpy(), out.inputs, out.labels)
                values.append(leak.psnr_mean)
            else:
                failures.append(f"batchnorm {mode} seed {seed}: {out}")
    train, evaluation = (mean_std(psnr[m])[0] for m in ("train", "eval"))
    detail = f"train {train:.1f} dB vs eval {evaluation:.1f} dB (B={batch}, {seeds} seed(s))"
    if not psnr["train"] or not psnr["eval"]:
        return (claim, UNMEASURED, detail), failures
    return (claim, HOLDS if evaluation > train else FAILS, detail), failures


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", action="store_true", help="the 8-run CPU subset (docstring)")
    parser.add_argument("--models", nargs="+")
    parser.add_argument("--inits", nargs="+")
    parser.add_argument("--activations", nargs="+")
    parser.add_argument("--batch-sizes", nargs="+", type=int)
    parser.add_argument("--prune", nargs="+", help="'none' and/or fractions, e.g. none 0.2")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--jobs", nargs="+", type=int, default=[1], help="one sweep per value")
    parser.add_argument("--ray-address", help="submit the jobs to this Ray job server")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "runs")
    parser.add_argument(
        "--sweep-dir", type=Path, nargs="+", help="summarise these sweeps together, run nothing"
    )
    parser.add_argument("--batchnorm", action="store_true", help="add the BatchNorm comparison")
    parser.add_argument("--bn-iterations", type=int, default=500)
    parser.add_argument("--bn-seeds", type=int, help="BatchNorm comparison seeds (default --seeds)")
    args = parser.parse_args()
    grid = SUBSET if args.subset else FULL
    for key, value in grid.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main() -> int:
    """Run (or re-read) the sweep, print its table and verdicts.

    Exit 1 only when the measurement itself is broken (a job failed, an attack gave no
    PSNR, nothing ran); a conclusion of the study that does not replicate here is printed
    as such and is not an error.
    """
    args = parse_args()
    sweep_dirs: list[Path] = args.sweep_dir or []
    if not sweep_dirs:
        for jobs in args.jobs:  # the same sweep once per value: its results, and its timing
            sweep_dir, wall = run_sweep(sweep_overrides(args), jobs, args.ray_address)
            count = len(list(sweep_dir.glob("job-*/job.json")))
            print(
                f"sweep of {count} runs with --jobs {jobs}: {wall:.0f} s "
                f"({wall / max(1, count):.1f} s a run; {sweep_dir})"
            )
        sweep_dirs = [sweep_dir]
    runs: list[Run] = []
    found_problems: list[Problem] = []
    interrupted: list[str] = []
    for sweep_dir in sweep_dirs:
        found, broken, stopped = load_runs(sweep_dir)
        runs += found
        found_problems += broken
        interrupted += stopped
    if interrupted:
        print(f"not run (sweep stopped or still running): {', '.join(interrupted)}")
    problems, settled = unsettled(runs, found_problems)
    for message in settled:
        print(f"failed, then run again ok: {message}")
    if not runs:
        problems.append("no finished job")
    print_table(runs)
    verdicts = study_verdicts(runs)
    if args.batchnorm:
        seeds = args.bn_seeds or max(1, args.seeds)
        verdict, failures = batchnorm_verdict(args.bn_iterations, seeds)
        verdicts.append(verdict)
        problems += failures
    for claim, status, detail in verdicts:
        print(f"{status:>18}: {claim} [{detail}]")
    for problem in problems:
        print(f"measurement broken: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
