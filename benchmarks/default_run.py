"""The default experiment as a user runs it: wall time, final accuracy and per-update leakage.

    .venv/bin/python benchmarks/default_run.py                     # `fedleak run`, seed 0
    .venv/bin/python benchmarks/default_run.py --seeds 0 1 2       # the same, three seeds
    .venv/bin/python benchmarks/default_run.py --set pool=inprocess

Each run is ``fedleak run output_dir=<tmp> seed=<s>`` in a fresh process, timed from its start
to its exit (imports, Ray, the federation, the drain of the attacks, the report), with the
moments its first and last rounds were printed. Per run it prints the final test accuracy,
the number of client updates, how many have an attack row at >= 60 dB, and the lowest
per-update best PSNR. It exits 1 when a claim of the README does not hold: every run under
``--budget`` seconds (120), final test accuracy >= 0.85, every update recovered at >= 60 dB.
The 1-minute load average is printed beside each run: on a shared machine it explains slow
wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXACT_DB = 60.0
MIN_ACCURACY = 0.85


@dataclass(frozen=True)
class RunTiming:
    """Seconds from the start of ``fedleak run`` to its first round, last round and exit."""

    first_round_s: float
    last_round_s: float
    wall_s: float


@dataclass(frozen=True)
class RunOutcome:
    """What one default run achieved."""

    seed: int
    timing: RunTiming
    load: float
    accuracy: float
    updates: int
    recovered: int
    min_best_psnr: float


def timed_run(out: Path, seed: int, overrides: list[str]) -> RunTiming:
    """Run ``fedleak run`` and note when its first and last ``round`` lines appear."""
    command = [sys.executable, "-m", "fedleak.simulator.cli", "run", f"output_dir={out}"]
    command.append(f"seed={seed}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    first: float | None = None
    last = float("nan")
    lines: list[str] = []
    with subprocess.Popen(
        [*command, *overrides], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("round ") and "|" in line:
                last = time.monotonic() - start
                first = last if first is None else first
        code = proc.wait()
    if code != 0:
        raise RuntimeError(f"fedleak run exited {code}:\n{''.join(lines[-30:])}")
    return RunTiming(float("nan") if first is None else first, last, time.monotonic() - start)


def measure(run_dir: Path) -> tuple[float, int, int, float]:
    """(final test accuracy, updates, updates with an attack >= 60 dB, lowest best PSNR)."""
    training = [json.loads(line) for line in (run_dir / "training.jsonl").open()]
    best: dict[tuple[int, int], float] = {}
    for line in (run_dir / "leakage.jsonl").open():
        row = json.loads(line)
        psnr = row["psnr_min"] if row["status"] == "ok" and row["psnr_min"] is not None else 0.0
        key = (row["round"], row["node_id"])
        best[key] = max(best.get(key, 0.0), psnr)
    recovered = sum(value >= EXACT_DB for value in best.values())
    return training[-1]["test_accuracy"], len(best), recovered, min(best.values(), default=0.0)


def run_default(seed: int, overrides: list[str]) -> RunOutcome:
    """One default run in a temporary output directory."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        timing = timed_run(Path(tmp), seed, overrides)
        (run_dir,) = [p.parent for p in Path(tmp).glob("*/*/leakage.jsonl")]
        accuracy, updates, recovered, low = measure(run_dir)
    return RunOutcome(seed, timing, load, accuracy, updates, recovered, low)


def print_table(outcomes: list[RunOutcome]) -> None:
    """One line per run."""
    header = (
        f"{'seed':>4}  {'wall_s':>6}  {'first_round_s':>13}  {'last_round_s':>12}  {'load1':>5}  "
        f"{'final_acc':>9}  {'updates':>7}  {'>=60dB':>6}  {'min_best_psnr':>13}"
    )
    print(header)
    print("-" * len(header))
    for o in outcomes:
        t = o.timing
        print(
            f"{o.seed:>4}  {t.wall_s:>6.1f}  {t.first_round_s:>13.1f}  {t.last_round_s:>12.1f}  "
            f"{o.load:>5.1f}  {o.accuracy:>9.3f}  {o.updates:>7}  {o.recovered:>6}  "
            f"{o.min_best_psnr:>13.1f}"
        )


def verdicts(outcomes: list[RunOutcome], budget_s: float) -> list[tuple[str, bool]]:
    """The README's claims about the default run, each with whether every run meets it."""
    return [
        (f"wall time < {budget_s:.0f} s", all(o.timing.wall_s < budget_s for o in outcomes)),
        (
            f"final test accuracy >= {MIN_ACCURACY}",
            all(o.accuracy >= MIN_ACCURACY for o in outcomes),
        ),
        (
            f"every update recovered at >= {EXACT_DB:.0f} dB",
            all(o.updates > 0 and o.recovered == o.updates for o in outcomes),
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget", type=float, default=120.0, help="wall-time claim, seconds")
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides for every run")
    args = parser.parse_args()
    outcomes = [run_default(seed, args.set) for seed in args.seeds]
    print_table(outcomes)
    failed = 0
    for claim, holds in verdicts(outcomes, args.budget):
        print(f"{'holds' if holds else 'FAILS'}: {claim}")
        failed += not holds
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
