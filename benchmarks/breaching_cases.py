"""fedleak at its defaults against breaching 0.1.2 at its shipped settings, case by case.

Each case is one client update of fedleak's own FedSGD client code (lr 0.1, cross-entropy)
on a batch of natural 32x32 RGB photos (``dataset=photos``) or 25x25 LFW faces
(``dataset=lfw``; the gray faces repeated into 3 channels, as breaching's TV prior needs),
through an untrained model or one after 10 rounds of training (10 SGD steps at lr 0.1 on
batches of 32 other training images: the global model of a FedSGD federation after 10
rounds). No labels are given to either tool.

- **fedleak**: every registered attack at its defaults (``create_attack(name)``, no
  settings); the best PSNR among those that apply is fedleak's result, with its labels.
- **breaching**: its shipped ``invertinggradients`` (24,000 signed-Adam steps, TV 0.2, labels
  by its ``bias-corrected`` strategy) and ``deepleakage`` (L-BFGS, 1,200 steps, labels
  optimised jointly) configs, run by ``benchmarks/breaching_worker.py`` in a scratch
  environment that has breaching (never a fedleak dependency; see that file's docstring).
  The best of the two is breaching's result.

Labels are right when the recovered label multiset equals the batch's. Time per iteration is
inverting gradients' (fedleak at its default budget, breaching at its shipped one).
PSNR is measured after matching the reconstruction to the batch (fedleak's leakage metric,
the same for both)::

    python benchmarks/breaching_cases.py --breaching-python /tmp/breach-venv/bin/python
    # on a GPU: add --device cuda; on a CPU, a shorter breaching budget for a smoke run:
    python benchmarks/breaching_cases.py --breaching-python ... --breaching-iterations 500

Exit 1 when an acceptance line fails: fedleak below breaching on a case, a label multiset
wrong where breaching's is right, or inverting gradients above 0.5x breaching's time per
iteration.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.client_step import client_step  # noqa: E402
from fedleak import simulator  # noqa: E402,F401  (torchvision next to a CPU torch)
from fedleak.attacks import TrainingHyperparams, create_attack, execute_attack  # noqa: E402
from fedleak.attacks.losses import observed_gradient  # noqa: E402
from fedleak.attacks.registry import available_attacks  # noqa: E402
from fedleak.attacks.types import InterceptedUpdate, Reconstruction  # noqa: E402
from fedleak.simulator.data.datasets import load_dataset  # noqa: E402
from fedleak.simulator.metrics.leakage import compute_leakage  # noqa: E402
from fedleak.simulator.models.architectures import ModelSpec, build_model  # noqa: E402

BREACHING_ATTACKS = ("invertinggradients", "deepleakage")
TRAINING_ROUNDS, TRAINING_BATCH, LR = 10, 32, 0.1


@dataclass(frozen=True)
class Case:
    """One attacked update: model, data set, batch size, trained for 10 rounds or not."""

    model: str
    data: str
    batch: int
    trained: bool

    @property
    def label(self) -> str:
        return f"{self.model}:{self.data} B={self.batch} {'trained' if self.trained else 'init'}"


CASES = [
    Case("lenet", "photos", 1, False),
    Case("lenet", "photos", 4, False),
    Case("lenet", "lfw", 1, False),
    Case("cnn", "photos", 1, True),
    Case("cnn", "photos", 4, False),
    Case("resnet18", "photos", 1, False),
    Case("mlp", "photos", 8, False),
    Case("lenet", "lfw", 8, True),
    Case("mlp", "lfw", 4, True),
]
"""Photos and faces; lenet, cnn, resnet18 and mlp; B = 1, 4 and 8; untrained and trained."""


@dataclass(frozen=True)
class Attacked:
    """A case's update and its truth."""

    model: torch.nn.Module
    update: InterceptedUpdate
    inputs: np.ndarray
    labels: np.ndarray


def attacked_update(case: Case, seed: int) -> Attacked:
    """The case's model (trained or not) and one client's FedSGD update on a seeded batch."""
    train = load_dataset(case.data, data_dir=ROOT / "data", seed=0, test_fraction=0.2).train
    images = train.inputs
    if images.shape[1] == 1:  # breaching's TV prior takes 3 channels: gray repeated into 3
        images = np.repeat(images, 3, axis=1)
    shape = tuple(int(s) for s in images.shape[1:])
    spec = ModelSpec(case.model, shape, train.num_classes)
    model = build_model(spec, seed=seed).train()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train.labels))
    batch, rest = order[: case.batch], order[case.batch :]
    if case.trained:
        optimiser = torch.optim.SGD(model.parameters(), lr=LR)
        for _ in range(TRAINING_ROUNDS):
            idx = rng.choice(rest, size=TRAINING_BATCH, replace=False)
            x, y = torch.from_numpy(images[idx]), torch.from_numpy(train.labels[idx])
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimiser.step()
    hp = TrainingHyperparams("fedsgd", LR, case.batch, 1)
    rng = np.random.default_rng(seed)
    step = client_step(
        model, images[batch], train.labels[batch], hp, num_classes=spec.num_classes, rng=rng
    )
    return Attacked(model, step.update, step.inputs, step.labels)


@dataclass(frozen=True)
class Outcome:
    """One tool's best attack on a case."""

    attack: str
    psnr: float
    labels_right: bool
    ig_ms_per_iteration: float


def _labels_right(truth: np.ndarray, found: np.ndarray) -> bool:
    return sorted(np.asarray(truth).tolist()) == sorted(np.asarray(found).tolist())


def fedleak_best(case: Attacked, device: torch.device, seed: int) -> Outcome:
    """Every registered attack at its defaults; the best PSNR of those that apply."""
    scores: list[tuple[float, str, bool]] = []
    ig_ms = float("nan")
    for name in available_attacks():
        start = time.perf_counter()
        out = execute_attack(create_attack(name), case.model, case.update, device=device, seed=seed)
        seconds = time.perf_counter() - start
        if not isinstance(out, Reconstruction):
            continue
        metrics = compute_leakage(case.inputs, case.labels, out.inputs, out.labels)
        scores.append((metrics.psnr_mean, name, _labels_right(case.labels, out.labels)))
        if name == "inverting_gradients":
            ig_ms = 1e3 * seconds / max(1, out.iterations)
    finished = [score for score in scores if not np.isnan(score[0])]
    psnr, name, right = max(finished) if finished else (float("nan"), "-", False)
    return Outcome(name, psnr, right, ig_ms)


def breaching_best(
    case: Attacked, python: str, iterations: int | None, device: str, seed: int
) -> Outcome:
    """breaching's shipped attacks (:data:`BREACHING_ATTACKS`); the best PSNR of them."""
    gradients = [g.detach().clone() for g in observed_gradient(case.model, case.update)]
    scores: list[tuple[float, str, bool]] = []
    ig_ms = float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        for attack in BREACHING_ATTACKS:
            case_file, out_file = Path(tmp) / f"{attack}.pt", Path(tmp) / f"{attack}-out.pt"
            payload = {
                "model": case.model,
                "gradients": gradients,
                "labels": None,
                "num_data_points": case.update.num_examples,
                "iterations": iterations,
                "input_shape": case.update.input_shape,
                "seed": seed,
                "attack": attack,
                "device": device,
                "num_classes": case.update.num_classes,
            }
            torch.save(payload, case_file)
            worker = ROOT / "benchmarks" / "breaching_worker.py"
            run = [python, str(worker), str(case_file), str(out_file), "1"]
            proc = subprocess.run(run, capture_output=True, text=True)
            if proc.returncode != 0:  # a failed attack is a result: no PSNR
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"  breaching {attack} failed: {last}", flush=True)
                scores.append((float("nan"), attack, False))
                continue
            result = torch.load(out_file, weights_only=False)
            recon = result["data"].numpy().clip(0.0, 1.0)
            found = result["labels"]  # None: the attack recovered no labels
            labels = np.full(len(recon), -1) if found is None else np.asarray(found).reshape(-1)
            metrics = compute_leakage(case.inputs, case.labels, recon, labels)
            scores.append((metrics.psnr_mean, attack, _labels_right(case.labels, labels)))
            if attack == "invertinggradients":
                ig_ms = 1e3 * float(result["seconds"]) / int(result["iterations"])
    finished = [score for score in scores if not np.isnan(score[0])]
    psnr, name, right = max(finished) if finished else (float("nan"), "-", False)
    return Outcome(name, psnr, right, ig_ms)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--breaching-python", required=True, help="a python that has breaching")
    parser.add_argument(
        "--breaching-iterations", type=int, default=None, help="default: the shipped budgets"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, nargs="+", default=None, help="indices into CASES")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    header = ("case", "fedleak best", "dB", "labels", "breaching best", "dB", "labels", "IG ms/it")
    print(" | ".join(header))
    failures = []
    for index in args.cases if args.cases is not None else range(len(CASES)):
        case = CASES[index]
        attacked = attacked_update(case, args.seed)
        ours = fedleak_best(attacked, device, args.seed)
        theirs = breaching_best(
            attacked, args.breaching_python, args.breaching_iterations, args.device, args.seed
        )
        ratio = ours.ig_ms_per_iteration / theirs.ig_ms_per_iteration
        print(
            f"{case.label} | {ours.attack} | {ours.psnr:.1f} | {ours.labels_right} | "
            f"{theirs.attack} | {theirs.psnr:.1f} | {theirs.labels_right} | "
            f"{ours.ig_ms_per_iteration:.1f} vs {theirs.ig_ms_per_iteration:.1f} ({ratio:.2f}x)",
            flush=True,
        )
        if not ours.psnr >= np.nan_to_num(theirs.psnr, nan=-np.inf):
            failures.append(
                f"{case.label}: fedleak {ours.psnr:.1f} < breaching {theirs.psnr:.1f} dB"
            )
        if theirs.labels_right and not ours.labels_right:
            failures.append(f"{case.label}: fedleak's labels wrong where breaching's are right")
        if not ratio <= 0.5:
            failures.append(
                f"{case.label}: IG time per iteration {ratio:.2f}x breaching's (> 0.5x)"
            )
    for failure in failures:
        print(f"fails: {failure}")
    print("all acceptance lines hold" if not failures else f"{len(failures)} line(s) fail")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
