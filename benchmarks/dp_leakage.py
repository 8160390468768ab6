"""Leakage against local-DP noise: a ``fedleak run -m`` sweep over noise levels and seeds.

Runs ``defense=dp defense.dp.noise=<levels> seed=<seeds>`` on the default federation
(digits, 2-layer mlp, FedSGD B=1, analytic + inverting_gradients) and prints, per noise
level: epsilon, final test accuracy and leakage (the best attack's mean PSNR) as mean ± std
over seeds, and the recovery rate. Exits 1 unless leakage decreases strictly with noise over
the levels given (any number from 2), every run finished, and every level has a value.

``defense.dp.clip`` is set below the update norm (~0.25 here), so every update is clipped:
both attacks are scale-invariant, so clipping alone does not stop them, and the noise is
measured against the clipped update.

Usage::

    .venv/bin/python benchmarks/dp_leakage.py                   # 5 levels x 3 seeds
    .venv/bin/python benchmarks/dp_leakage.py --sweep-dir DIR   # re-summarise a finished sweep
    # longer training (accuracy moves), attacks on the first two rounds only
    .venv/bin/python benchmarks/dp_leakage.py --rounds 15 --noise 0.0001,0.001,0.01,0.1,1 \
        --set federation.lr=0.3 'attack.rounds=[1,2]'
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # fedleak's packages before this folder (benchmarks/attacks.py)

from fedleak.simulator.sweep.runner import create_sweep_dir, plan_sweep, run_sweep  # noqa: E402
from fedleak.simulator.sweep.summary import (  # noqa: E402
    SettingSummary,
    aggregate,
    build_sweep_report,
    load_results,
)

NOISE = re.compile(r"defense\.dp\.noise=(\S+)")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--noise",
        default="0.00001,0.0001,0.001,0.01,0.1",
        help="comma-separated noise multipliers, at least 2",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per noise level")
    parser.add_argument("--rounds", type=int, default=2, help="federation.rounds of each run")
    parser.add_argument("--clip", type=float, default=0.1, help="defense.dp.clip of each run")
    parser.add_argument("--output-dir", default="runs", help="where the sweep directory goes")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="more overrides for every run, e.g. federation.lr=0.3 attack.rounds=[1,2]",
    )
    parser.add_argument(
        "--sweep-dir", type=Path, help="summarise this finished sweep instead of running one"
    )
    args = parser.parse_args()
    levels = {float(v) for v in args.noise.split(",") if v.strip()}
    if args.sweep_dir is None and len(levels) < 2:
        parser.error(f"--noise {args.noise!r}: a trend needs at least 2 distinct noise levels")
    return args


def leakage_claim(leakage: list[float]) -> tuple[str, bool]:
    """'leakage decreases monotonically over N noise levels', checked as stated.

    Holds when there are at least 2 levels, every value is a number, and each level's
    leakage is strictly below the previous one's (noise ascending).
    """
    holds = (
        len(leakage) >= 2
        and not any(math.isnan(v) for v in leakage)
        and all(a > b for a, b in itertools.pairwise(leakage))
    )
    trend = " -> ".join(f"{v:.1f}" for v in leakage)
    return (
        f"leakage decreases monotonically over {len(leakage)} noise levels "
        f"({trend} dB as noise rises): {holds}",
        holds,
    )


def _run(args: argparse.Namespace) -> Path:
    plan = plan_sweep(
        [
            "name=dp_leakage",
            f"output_dir={args.output_dir}",
            f"federation.rounds={args.rounds}",
            "defense=dp",
            f"defense.dp.clip={args.clip}",
            f"defense.dp.noise={args.noise}",
            f"seed=range(0,{args.seeds})",
            # the 4-client federation and both attacks this benchmark was measured with
            "federation.num_clients=4",
            "attack=analytic_ig",
            *args.set,
        ]
    )
    sweep_dir = create_sweep_dir(plan)
    print(f"dp_leakage: {len(plan.jobs)} runs -> {sweep_dir}", flush=True)
    run_sweep(plan, sweep_dir)
    return sweep_dir


def _pm(value: tuple[float, float], digits: int) -> str:
    return f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"


def _table(rows: list[tuple[float, SettingSummary]]) -> str:
    header = ("noise", "epsilon", "seeds", "test_acc", "leakage_psnr_dB", "recovery", "attack")
    body = [
        (
            f"{noise:g}",
            f"{row.epsilon:.3g}" if row.epsilon is not None else "-",
            f"{row.seeds}" + (f" ({row.failed} failed)" if row.failed else ""),
            _pm(row.test_accuracy, 3),
            _pm(row.leakage_psnr, 1),
            _pm(row.recovery_rate, 2),
            row.best_attack,
        )
        for noise, row in rows
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [header, *body]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in lines)


def main() -> int:
    """Run (or re-read) the sweep, print the table; 0 when leakage falls with every level."""
    args = _args()
    sweep_dir = args.sweep_dir or _run(args)
    build_sweep_report(sweep_dir)
    rows = []
    for row in aggregate(load_results(sweep_dir)):
        match = NOISE.search(row.setting)
        if match:
            rows.append((float(match.group(1)), row))
    rows.sort(key=lambda pair: pair[0])
    print(f"\nlocal DP sweep ({sweep_dir}); mean ± std over seeds")
    print(_table(rows))
    leakage = [row.leakage_psnr[0] for _, row in rows]
    complete = all(row.failed == 0 and row.seeds > 0 for _, row in rows)
    line, falling = leakage_claim(leakage)
    print(f"\n{line}")
    if not complete:
        print("some runs failed; see sweep_summary.txt", file=sys.stderr)
    return 0 if falling and complete else 1


if __name__ == "__main__":
    sys.exit(main())
