"""Inverting gradients' time per iteration against its floor, and what vectorised restarts buy.

One iteration of a gradient-matching attack cannot cost less than one forward pass, one
backward pass that keeps its graph (the candidate's parameter gradient) and one backward pass
through that graph to the input (the double backward). This script times, one CPU thread,
on untrained models and natural photos / digits:

- ``floor``: exactly those three passes in bare PyTorch, a fixed random vector standing in for
  the matching loss's gradient: no prior, no optimiser, no projection;
- ``fedleak``: an iteration of fedleak's ``InvertingGradientsAttack`` at its defaults
  (relative TV, signed Adam with decay, projection), setup excluded (the difference of a
  long and a short run);
- ``R apart`` / ``R together``: fedleak with R restarts one after another, and evaluated
  together in one vectorised pass (``restarts_together``, :mod:`fedleak.attacks.batched_restarts`),
  per restart-iteration. ``together`` is forced on here to show where it pays; at the attack's
  defaults it runs only where ``batched_restarts_reason`` allows (up to
  ``TOGETHER_MAX_PARAMETERS`` parameters, the rule these columns measure).

Each time is the best of ``--repeats`` measurements (the machine's load only adds)::

    python benchmarks/ig_throughput.py
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.calibrate_inverting_gradients import update_for  # noqa: E402
from fedleak.attacks.inverting_gradients import (  # noqa: E402
    InvertingGradientsAttack,
    InvertingGradientsConfig,
)
from fedleak.attacks.types import InterceptedUpdate  # noqa: E402

CASES = [
    ("lenet", "photos", 1),
    ("lenet", "photos", 4),
    ("lenet", "lfw", 1),
    ("cnn", "photos", 1),
    ("mlp", "digits", 4),
    ("mlp", "photos", 4),
    ("fcnn", "digits", 4),
]


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``run`` (after one warm-up call)."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def per_call(step: Callable[[], object], repeats: int, calls: int = 20) -> float:
    """Seconds per call of ``step``: the best of ``repeats`` runs of ``calls`` calls."""
    return best_seconds(lambda: [step() for _ in range(calls)], repeats) / calls


def floor_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], object]:
    """One forward, one graph-keeping backward to the parameters, one backward to ``x``."""
    params = [p for p in model.parameters() if p.requires_grad]
    direction = [torch.randn_like(p) for p in params]
    candidate = x.clone().requires_grad_(True)

    def step() -> object:
        loss = F.cross_entropy(model(candidate), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        return torch.autograd.grad(grads, [candidate], grad_outputs=direction)

    return step


def fedleak_seconds_per_iteration(
    model: torch.nn.Module,
    update: InterceptedUpdate,
    repeats: int,
    restarts: int = 1,
    together: bool = False,
) -> float:
    """fedleak's time per restart-iteration, setup excluded (200 - 50 iterations)."""

    def run(iterations: int) -> Callable[[], object]:
        cfg = InvertingGradientsConfig(
            iterations=iterations, restarts=restarts, time_budget_s=1e6, restarts_together=together
        )
        attack = InvertingGradientsAttack(cfg)
        return lambda: attack.reconstruct(model, update, device=torch.device("cpu"), seed=0)

    long, short = best_seconds(run(200), repeats), best_seconds(run(50), repeats)
    return (long - short) / 150 / restarts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--restarts", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    header = ["model", "data", "B", "floor ms", "fedleak ms", "fedleak/floor"]
    header += [f"{args.restarts} apart ms", f"{args.restarts} together ms", "together/apart"]
    print(" ".join(header))
    for model_name, data, batch in CASES:
        model, update, inputs, labels = update_for(model_name, data, batch, seed=0)
        x, y = torch.from_numpy(inputs), torch.from_numpy(labels)
        floor = per_call(floor_step(model, x, y), args.repeats)
        ours = fedleak_seconds_per_iteration(model, update, args.repeats)
        row = [model_name, data, str(batch), f"{floor * 1e3:.2f}", f"{ours * 1e3:.2f}"]
        row.append(f"{ours / floor:.2f}")
        apart = fedleak_seconds_per_iteration(model, update, args.repeats, args.restarts)
        together = fedleak_seconds_per_iteration(
            model, update, args.repeats, args.restarts, together=True
        )
        row += [f"{apart * 1e3:.2f}", f"{together * 1e3:.2f}", f"{together / apart:.2f}"]
        print(" ".join(f"{c:>{len(h)}}" for c, h in zip(row, header, strict=True)), flush=True)


if __name__ == "__main__":
    main()
