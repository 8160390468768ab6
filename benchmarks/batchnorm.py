"""Inverting gradients on ResNet-18 with and without the BatchNorm statistics term, and breaching.

Cases: ResNet-18 (CIFAR stem, untrained, 10 classes) and batches of natural 32x32 RGB
photographs (scikit-image's bundled colour photos, downscaled), one FedSGD step of fedleak's
own client code (B = 1 and 4, lr 0.1). The server's update carries the BatchNorm running
statistics, as a Flower client's ``state_dict`` does.

Rows, all at the same iteration count and from the update alone (no label disclosure):

- ``fedleak IG + BN stats``: ``inverting_gradients`` at its defaults (the statistics term on);
- ``fedleak IG``: the same with ``batchnorm_prior=False``;
- ``breaching IG``: breaching 0.1.2's ``invertinggradients`` at its shipped settings (TV 0.2,
  Gaussian init, bias-corrected label inference) but ``max_iterations``, run by
  ``benchmarks/breaching_worker.py`` in a scratch environment that has breaching
  (``--breaching-python``; the worker's docstring says how to make one). Without it, the row
  is left out and the comparison with breaching is not checked.

Columns: PSNR and SSIM after Hungarian matching, label accuracy, seconds per iteration, device.
Checks (exit 1 when one fails, as printed): the statistics term adds at least 3 dB, and fedleak
with it beats breaching, on every batch size (means over the seeds)::

    python benchmarks/batchnorm.py --iterations 200 --breaching-python /tmp/breach-venv/bin/python
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.client_step import client_step  # noqa: E402
from benchmarks.compare_breaching import print_table  # noqa: E402
from benchmarks.photos import photo_batch  # noqa: E402
from fedleak import simulator  # noqa: E402,F401  (makes torchvision importable next to a CPU torch first)
from fedleak.attacks import InterceptedUpdate, TrainingHyperparams, create_attack  # noqa: E402
from fedleak.attacks.base import execute_attack  # noqa: E402
from fedleak.attacks.types import Reconstruction  # noqa: E402
from fedleak.simulator.metrics.leakage import compute_leakage  # noqa: E402
from fedleak.simulator.models.architectures import ModelSpec, build_model  # noqa: E402

SHAPE = (3, 32, 32)
NUM_CLASSES = 10
LR = 0.1
MIN_GAIN_DB = 3.0


def client_update(
    model: torch.nn.Module, inputs: np.ndarray, labels: np.ndarray, seed: int
) -> tuple[InterceptedUpdate, np.ndarray, np.ndarray]:
    """One FedSGD step by fedleak's client code; the update and the batch in step order."""
    hp = TrainingHyperparams("fedsgd", LR, len(labels), 1)
    rng = np.random.default_rng(seed)
    step = client_step(model, inputs, labels, hp, num_classes=NUM_CLASSES, rng=rng)
    return step.update, step.inputs, step.labels


def run_fedleak(
    model: torch.nn.Module, update: InterceptedUpdate, iterations: int, prior: bool, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    attack = create_attack(
        "inverting_gradients", {"iterations": iterations, "batchnorm_prior": prior}
    )
    outcome = execute_attack(attack, model, update, device=torch.device("cpu"), seed=seed)
    if not isinstance(outcome, Reconstruction):
        raise RuntimeError(f"fedleak's attack did not run: {outcome.reason}")
    return outcome.inputs, outcome.labels, outcome.wall_time_s


def run_breaching(
    python: str, model: torch.nn.Module, update: InterceptedUpdate, iterations: int, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    names = [n for n, _ in model.named_parameters()]
    gradients = [g.float() for g in update.pseudo_gradient(names).values()]
    with tempfile.TemporaryDirectory() as tmp:
        case, out = Path(tmp) / "case.pt", Path(tmp) / "out.pt"
        torch.save(
            {
                "model": model,
                "gradients": gradients,
                "labels": None,
                "num_data_points": update.num_examples,
                "iterations": iterations,
                "input_shape": SHAPE,
                "seed": seed,
            },
            case,
        )
        worker = ROOT / "benchmarks" / "breaching_worker.py"
        subprocess.run(
            [python, str(worker), str(case), str(out), str(torch.get_num_threads())], check=True
        )
        result = torch.load(out, weights_only=False)
    return result["data"].numpy(), np.asarray(result["labels"]), float(result["seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=200, help="per attack, all rows")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one case per seed")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--breaching-python", default=None, help="python that has breaching")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows: list[tuple[object, ...]] = []
    means: dict[tuple[str, int], list[float]] = {}
    for batch in args.batch_sizes:
        for seed in args.seeds:
            model = build_model(ModelSpec("resnet18", SHAPE, NUM_CLASSES), seed=seed).train()
            inputs, labels = photo_batch(batch, seed, crop=False)
            update, truth, truth_labels = client_update(model, inputs, labels, seed)
            runs = {
                "fedleak IG + BN stats": lambda m=model, u=update, s=seed: run_fedleak(
                    m, u, args.iterations, True, s
                ),
                "fedleak IG": lambda m=model, u=update, s=seed: run_fedleak(
                    m, u, args.iterations, False, s
                ),
            }
            if args.breaching_python:
                runs["breaching IG"] = lambda m=model, u=update, s=seed: run_breaching(
                    args.breaching_python, m, u, args.iterations, s
                )
            for name, run in runs.items():
                start = time.perf_counter()
                recon, recon_labels, seconds = run()
                seconds = seconds or time.perf_counter() - start
                leak = compute_leakage(truth, truth_labels, np.clip(recon, 0, 1), recon_labels)
                means.setdefault((name, batch), []).append(leak.psnr_mean)
                rows.append(
                    (
                        name,
                        batch,
                        seed,
                        f"{leak.psnr_mean:.2f}",
                        f"{leak.ssim_mean:.3f}",
                        f"{leak.label_accuracy:.2f}",
                        f"{seconds / args.iterations:.3f}",
                        "cpu",
                    )
                )
                print(*rows[-1], sep="  ", flush=True)
    print(
        f"\n# ResNet-18 (CIFAR stem), natural 32x32 photos, FedSGD lr {LR}, "
        f"{args.iterations} iterations, {args.threads} thread(s), torch {torch.__version__}"
    )
    header = ("attack", "B", "seed", "psnr_db", "ssim", "label_acc", "s_per_iter", "device")
    print_table(header, rows)
    return check(means, args.batch_sizes)


def check(means: dict[tuple[str, int], list[float]], batch_sizes: list[int]) -> int:
    """Print and check the claims; 0 when all hold."""
    failed = 0
    for batch in batch_sizes:
        with_bn = float(np.mean(means[("fedleak IG + BN stats", batch)]))
        without = float(np.mean(means[("fedleak IG", batch)]))
        gain_ok = with_bn - without >= MIN_GAIN_DB
        failed += not gain_ok
        print(
            f"B={batch}: BN statistics add {with_bn - without:+.2f} dB (>= {MIN_GAIN_DB}): "
            f"{gain_ok}"
        )
        if ("breaching IG", batch) in means:
            reference = float(np.mean(means[("breaching IG", batch)]))
            beat = with_bn > reference
            failed += not beat
            print(
                f"B={batch}: fedleak {with_bn:.2f} dB vs breaching {reference:.2f} dB: "
                f"above: {beat}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
