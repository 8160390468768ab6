"""fedleak's Inverting Gradients against the reference implementation (``breaching``).

Both run Geiping et al.'s recipe (cosine matching + TV, signed Adam with step decay at 3/8,
5/8, 7/8, the [0, 1] box) for the same number of iterations, on the same model, the same
image, the same label, the same intercepted gradient and the same random starting point;
the script prints PSNR against the true image, wall time and time per iteration.

``breaching`` (by the method's author, on PyPI) is *not* a fedleak dependency. Install it in a
scratch environment and run this file with that environment's python, the repo on the path::

    python3 -m venv /tmp/breach-venv
    /tmp/breach-venv/bin/pip install torch==2.13.0            # the CPU build
    /tmp/breach-venv/bin/pip install --no-deps breaching hydra-core omegaconf \\
        antlr4-python3-runtime==4.9.3 pyyaml scipy numpy pillow tqdm lpips torchvision==0.28.0 \\
        packaging scikit-learn joblib threadpoolctl cloudpickle narwhals \\
        scikit-image imageio tifffile lazy_loader networkx
    PYTHONPATH=. /tmp/breach-venv/bin/python benchmarks/compare_breaching.py --iterations 500

How the two are wired to the same problem:

- the gradient is computed once (one FedSGD step of a client on the image) and each attack
  gets the intercepted pseudo-gradient ``(global - client) / lr``: fedleak as an
  ``InterceptedUpdate``, breaching as ``shared_data["gradients"]``;
- the label is given to both (fedleak: disclosed labels; breaching: ``metadata["labels"]``);
- breaching's data normalisation is the identity (mean 0, std 1), so both optimise in the
  same [0, 1] pixel space and clamp to the same box;
- breaching's ``TotalVariation`` works on 3 channels, so the gray image is repeated into 3;
  both get the same TV weight (breaching's TV is the mean of ``|dx| + |dy|`` with zero padding
  at the border, fedleak's the sum of the two means without padding: within a border term);
- the starting point is fedleak's first restart (``torch.rand`` with the attack seed), given
  to breaching as ``initial_data``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import sys
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fedleak import simulator  # noqa: E402,F401  (makes torchvision importable next to a CPU torch first)
from fedleak.attacks import InterceptedUpdate, TrainingHyperparams  # noqa: E402
from fedleak.attacks.inverting_gradients import (  # noqa: E402
    InvertingGradientsAttack,
    InvertingGradientsConfig,
)
from fedleak.attacks.losses import model_gradient  # noqa: E402
from fedleak.simulator.data.datasets import load_dataset  # noqa: E402
from fedleak.simulator.models.architectures import ModelSpec, build_model  # noqa: E402

LR = 0.1
"""The client's learning rate (cancels out of the pseudo-gradient up to float rounding)."""


def psnr(truth: np.ndarray, recon: np.ndarray) -> float:
    """``10 log10(1 / MSE)`` for data in [0, 1]."""
    return float(-10.0 * np.log10(np.mean((truth.astype(np.float64) - recon) ** 2)))


def make_case(
    model_name: str, dataset: str, index: int, seed: int
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, InterceptedUpdate]:
    """Model, the client's image (3 channels) and label, and the update the server sees."""
    splits = load_dataset(dataset, data_dir=ROOT / "data", seed=0, test_fraction=0.2)
    image = torch.from_numpy(splits.train.inputs[index : index + 1]).repeat(1, 3, 1, 1)
    label = torch.from_numpy(splits.train.labels[index : index + 1])
    spec = ModelSpec(model_name, tuple(image.shape[1:]), splits.train.num_classes)
    model = build_model(spec, seed=seed)
    model.train()
    grads = model_gradient(model, "cross_entropy", image, label)
    names = [name for name, _ in model.named_parameters()]
    global_params = OrderedDict(
        (k, v.detach().numpy().copy()) for k, v in model.state_dict().items()
    )
    step = dict(zip(names, grads, strict=True))
    client_params = OrderedDict(
        (k, v - LR * step[k].detach().numpy()) if k in step else (k, v.copy())
        for k, v in global_params.items()
    )
    update = InterceptedUpdate(
        server_round=1,
        node_id=1,
        global_params=global_params,
        client_params=client_params,
        num_examples=1,
        hyperparams=TrainingHyperparams("fedsgd", LR, 1, 1),
        input_shape=spec.input_shape,
        num_classes=spec.num_classes,
        disclosed_labels=label.numpy(),
    )
    return model, image, label, update


def run_fedleak(
    model: torch.nn.Module, update: InterceptedUpdate, iterations: int, tv: float, seed: int
) -> tuple[np.ndarray, float]:
    cfg = InvertingGradientsConfig(
        iterations=iterations, tv_weight=tv, tv_relative=False, restarts=1
    )
    start = time.perf_counter()
    result = InvertingGradientsAttack(cfg).reconstruct(
        model, update, device=torch.device("cpu"), seed=seed
    )
    return result.inputs, time.perf_counter() - start


def run_breaching(
    model: torch.nn.Module,
    update: InterceptedUpdate,
    label: torch.Tensor,
    iterations: int,
    tv: float,
    seed: int,
) -> tuple[np.ndarray, float]:
    import breaching

    overrides = [
        f"optim.max_iterations={iterations}",
        f"regularization.total_variation.scale={tv}",
        f"optim.callback={10**9}",
        "restarts.num_trials=1",
    ]
    with contextlib.redirect_stdout(io.StringIO()):  # breaching prints what it loads
        cfg = breaching.get_attack_config("invertinggradients", overrides=overrides)
    setup: dict[str, Any] = {"device": torch.device("cpu"), "dtype": torch.float}
    attacker = breaching.attacks.prepare_attack(model, torch.nn.CrossEntropyLoss(), cfg, setup)
    channels = update.input_shape[0]
    server_payload = [
        {
            "parameters": [p.detach().clone() for p in model.parameters()],
            "buffers": None,
            "metadata": SimpleNamespace(
                shape=update.input_shape,
                modality="vision",
                mean=[0.0] * channels,
                std=[1.0] * channels,
            ),
        }
    ]
    pseudo = update.pseudo_gradient()
    shared_data = [
        {
            "gradients": [pseudo[name].clone() for name, _ in model.named_parameters()],
            "buffers": None,
            "metadata": {"num_data_points": 1, "labels": label.clone(), "local_hyperparams": None},
        }
    ]
    # fedleak's first restart starts from this draw
    init = torch.rand((1, *update.input_shape), generator=torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    output, _ = attacker.reconstruct(server_payload, shared_data, {}, initial_data=init)
    elapsed = time.perf_counter() - start
    return output["data"].detach().numpy(), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--model", default="lenet", help="a fedleak.simulator.models name")
    parser.add_argument("--dataset", default="lfw", choices=["lfw", "digits"])
    parser.add_argument("--images", type=int, nargs="+", default=[0, 1, 2], help="train indices")
    parser.add_argument("--tv", type=float, default=1e-4, help="TV weight, both implementations")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per image (median); 0: time the first"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.disable(logging.INFO)
    try:
        import breaching  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"breaching is not importable ({exc}); run with a python that has it (see the "
            "module docstring)"
        ) from exc

    rows = []
    per_image: list[tuple[object, ...]] = []
    paired: list[tuple[object, ...]] = []
    for iterations in args.iterations:
        results: dict[str, dict[str, list[float]]] = {
            name: {"psnr": [], "time": []} for name in ("fedleak", "breaching")
        }
        for index in args.images:
            model, image, label, update = make_case(args.model, args.dataset, index, args.seed)
            truth = image.numpy()
            first: dict[str, float] = {}
            for name in ("fedleak", "breaching"):  # quality (and warm-up) run
                recon, first[name] = (
                    run_fedleak(model, update, iterations, args.tv, args.seed)
                    if name == "fedleak"
                    else run_breaching(model, update, label, iterations, args.tv, args.seed)
                )
                results[name]["psnr"].append(psnr(truth, recon))
            per_image.append(
                (
                    iterations,
                    index,
                    f"{results['fedleak']['psnr'][-1]:.2f}",
                    f"{results['breaching']['psnr'][-1]:.2f}",
                )
            )
            times: dict[str, list[float]] = {"fedleak": [], "breaching": []}
            if args.repeats == 0:  # quality runs only: time those
                times = {name: [value] for name, value in first.items()}
            for _ in range(args.repeats):  # interleaved, so machine load hits both alike
                times["fedleak"].append(
                    run_fedleak(model, update, iterations, args.tv, args.seed)[1]
                )
                times["breaching"].append(
                    run_breaching(model, update, label, iterations, args.tv, args.seed)[1]
                )
            for name in times:
                results[name]["time"].append(statistics.median(times[name]))
        gaps = [a - b for a, b in zip(*(results[n]["psnr"] for n in results), strict=True)]
        spread = statistics.stdev(gaps) / len(gaps) ** 0.5 if len(gaps) > 1 else float("nan")
        wins = sum(gap >= 0 for gap in gaps)
        paired.append(
            (iterations, f"{statistics.mean(gaps):+.2f}", f"{spread:.2f}", f"{wins}/{len(gaps)}")
        )
        for name, values in results.items():
            wall = statistics.mean(values["time"])
            rows.append(
                (
                    name,
                    iterations,
                    f"{statistics.mean(values['psnr']):.2f}",
                    f"{min(values['psnr']):.2f}",
                    f"{wall:.2f}",
                    f"{wall / iterations * 1e3:.2f}",
                )
            )
    print(
        f"# Inverting Gradients, {args.model} on {args.dataset} images {args.images} "
        f"(3x repeated gray), B=1, TV {args.tv}, {args.threads} CPU thread(s), "
        f"torch {torch.__version__}; time = median of {args.repeats} interleaved runs"
    )
    header = ("implementation", "iterations", "psnr_mean", "psnr_min", "wall_s", "ms_per_iter")
    print_table(header, rows)
    print()
    print_table(("iterations", "image", "psnr_fedleak", "psnr_breaching"), per_image)
    print()
    print("# paired PSNR difference fedleak - breaching (same image, init, gradient)")
    print_table(("iterations", "mean_db", "std_err_db", "fedleak_ge"), paired)


def print_table(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    cells = [header, *rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
