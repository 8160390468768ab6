"""SPEAR (seed 002) on the 6-layer FCNN: exactness and time of whole-batch recovery.

Each batch is B real handwritten digits (scikit-learn's 8x8 set, offline, scaled to [0, 1]);
the client takes one FedSGD step on a randomly initialised ``fcnn`` (6 Linear layers, ReLU),
and the attack sees only the resulting update. Recovered samples are matched to the true
ones (Hungarian assignment on the MSE) and scored by PSNR (data range 1, capped at 300 dB).
One line per batch; seed 002 reports PSNR 124.2 dB at 2.0 min per B=20 batch on a GPU.

    python benchmarks/spear.py                           # B=20, float64, 5 batches
    python benchmarks/spear.py --dtype float32 --batch-size 8 --lr 1.0
    python benchmarks/spear.py --device cuda --batches 10
    python benchmarks/spear.py --threads 1               # pin the CPU threads
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from attacks import InterceptedUpdate, Reconstruction, TrainingHyperparams, execute_attack  # noqa: E402
from attacks.losses import model_gradient  # noqa: E402
from attacks.spear import SpearAttack, SpearConfig  # noqa: E402
from simulator.metrics import psnr  # noqa: E402
from simulator.models import ModelSpec, build_model  # noqa: E402

NUM_CLASSES = 10
INPUT_SHAPE = (1, 8, 8)


def fedsgd_update(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float
) -> InterceptedUpdate:
    """What the server receives after the client's single SGD step on ``(x, y)``."""
    names = [name for name, _ in model.named_parameters()]
    grads = dict(zip(names, model_gradient(model, "cross_entropy", x, y), strict=True))
    sent = OrderedDict((k, v.detach().cpu().numpy().copy()) for k, v in model.state_dict().items())
    back = OrderedDict(
        (k, v - np.asarray(lr, dtype=v.dtype) * grads[k].detach().cpu().numpy())
        for k, v in sent.items()
    )
    hp = TrainingHyperparams("fedsgd", lr, x.shape[0], 1)
    return InterceptedUpdate(1, 1, sent, back, x.shape[0], hp, INPUT_SHAPE, NUM_CLASSES)


def matched_psnr(truth: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """PSNR of each true sample against the recovered one it is assigned to."""
    flat_t = truth.reshape(len(truth), -1).astype(np.float64)
    flat_r = recon.reshape(len(recon), -1).astype(np.float64)
    cost = ((flat_t[:, None, :] - flat_r[None, :, :]) ** 2).mean(axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return psnr(flat_t[rows], flat_r[cols])


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Right-aligned plain-text table."""
    cells = [[str(h) for h in header]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    for line in cells:
        print("  ".join(text.rjust(width) for text, width in zip(line, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--batches", type=int, default=5, help="batches (seeds 0, 1, ...)")
    parser.add_argument("--width", type=int, default=200)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--lr", type=float, default=0.1, help="the client's SGD learning rate")
    parser.add_argument("--threshold-db", type=float, default=100.0)
    parser.add_argument("--time-budget", type=float, default=SpearConfig.time_budget_s)
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="attack device"
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=dtype)[:, None]
    labels = torch.tensor(digits.target)
    attack = SpearAttack(SpearConfig(time_budget_s=args.time_budget))
    spec = ModelSpec("fcnn", INPUT_SHAPE, NUM_CLASSES, width=args.width)
    header = (
        "model", "width", "N", "B", "dtype", "psnr_mean", "psnr_min", f">={args.threshold_db:g}dB",
        "reproduces", "candidates", "wall_s", "device",
    )  # fmt: skip
    table = []
    for seed in range(args.batches):
        model = build_model(spec, seed=seed).to(dtype)
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        x, y = images[pick[: args.batch_size]], labels[pick[: args.batch_size]]
        update = fedsgd_update(model, x, y, args.lr)
        model = model.to(device)
        start = time.perf_counter()
        result = execute_attack(attack, model, update, device=device, seed=seed)
        wall = time.perf_counter() - start
        row: list[object] = ["fcnn", args.width, x[0].numel(), args.batch_size, args.dtype]
        if isinstance(result, Reconstruction):
            scores = matched_psnr(x.numpy(), result.inputs)
            details = result.details
            row += [
                f"{scores.mean():.1f}", f"{scores.min():.1f}",
                f"{int((scores >= args.threshold_db).sum())}/{len(scores)}",
                details["reproduces"], details["candidates_sampled"],
            ]  # fmt: skip
        else:
            row += ["-", "-", f"0/{args.batch_size}", f"{result.status}: {result.reason}", "-"]
        table.append([*row, f"{wall:.1f}", device.type])
    print_table(header, table)


if __name__ == "__main__":
    main()
