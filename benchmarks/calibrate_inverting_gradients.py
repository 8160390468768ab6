"""The sweep behind inverting gradients' image-prior default: TV weight x iterations x input.

For each kind of input (natural 32x32 RGB photos, 25x25 LFW faces, 8x8 digits), each batch
size and each seed, one client update of an untrained model (fedleak's own client code, FedSGD,
lr 0.1) is attacked with every TV weight and iteration budget of the grid, the true labels
given (so that the prior is calibrated apart from label inference). The table holds the mean
PSNR after Hungarian matching; the last column names the best TV weight per row::

    python benchmarks/calibrate_inverting_gradients.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.client_step import client_step  # noqa: E402
from benchmarks.photos import photo_batch  # noqa: E402
from fedleak import simulator  # noqa: E402,F401  (torchvision next to a CPU torch)
from fedleak.attacks import TrainingHyperparams, create_attack, execute_attack  # noqa: E402
from fedleak.attacks.types import InterceptedUpdate, Reconstruction  # noqa: E402
from fedleak.simulator.data.datasets import load_dataset  # noqa: E402
from fedleak.simulator.metrics.leakage import compute_leakage  # noqa: E402
from fedleak.simulator.models.architectures import ModelSpec, build_model  # noqa: E402


def batch_of(kind: str, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(inputs, labels, num_classes)`` of one client batch of ``kind``."""
    if kind == "photos":
        inputs, labels = photo_batch(size, seed)
        return inputs, labels, 10
    splits = load_dataset(kind, data_dir=ROOT / "data", seed=0, test_fraction=0.2)
    index = np.random.default_rng(seed).choice(len(splits.train), size=size, replace=False)
    return splits.train.inputs[index], splits.train.labels[index], splits.train.num_classes


def update_for(
    model_name: str, kind: str, size: int, seed: int
) -> tuple[torch.nn.Module, InterceptedUpdate, np.ndarray, np.ndarray]:
    inputs, labels, classes = batch_of(kind, size, seed)
    shape = tuple(int(s) for s in inputs.shape[1:])
    model = build_model(ModelSpec(model_name, shape, classes), seed=seed).train()
    hp = TrainingHyperparams("fedsgd", 0.1, size, 1)
    rng = np.random.default_rng(seed)
    step = client_step(
        model, inputs, labels, hp, num_classes=classes, rng=rng, disclose_labels=True
    )
    return model, step.update, step.inputs, step.labels


def _weight(text: str) -> float | None:
    return None if text == "rule" else float(text)


def _label(weight: float | None) -> str:
    return "rule" if weight is None else f"{weight:g}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", default=["lenet:photos", "lenet:lfw", "mlp:digits"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument(
        "--tv",
        type=_weight,
        nargs="+",
        default=[None, 1e-4, 1e-3, 1e-2],
        help="TV weights; 'rule': the attack's own default (tv_weight=None)",
    )
    parser.add_argument("--iterations", type=int, nargs="+", default=[200, 500])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--param", action="append", default=[], help="extra KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    extra = {k: eval(v) for k, v in (p.split("=", 1) for p in args.param)}
    print("case  B  iterations  " + "  ".join(f"tv={_label(t)}" for t in args.tv) + "  best_tv")
    for case in args.cases:
        model_name, kind = case.split(":")
        for size in args.batch_sizes:
            updates = [update_for(model_name, kind, size, s) for s in args.seeds]
            for iterations in args.iterations:
                means = []
                for tv in args.tv:
                    psnrs = []
                    for seed, (model, update, truth, labels) in zip(
                        args.seeds, updates, strict=True
                    ):
                        params = {"iterations": iterations, "tv_weight": tv, **extra}
                        attack = create_attack("inverting_gradients", params)
                        out = execute_attack(
                            attack, model, update, device=torch.device("cpu"), seed=seed
                        )
                        assert isinstance(out, Reconstruction), out
                        psnrs.append(
                            compute_leakage(truth, labels, out.inputs, out.labels).psnr_mean
                        )
                    means.append(float(np.mean(psnrs)))
                best = args.tv[int(np.argmax(means))]
                cells = "  ".join(f"{m:8.2f}" for m in means)
                print(f"{case}  {size}  {iterations}  {cells}  {_label(best)}", flush=True)


if __name__ == "__main__":
    main()
