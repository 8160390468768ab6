"""Run breaching 0.1.2's Inverting Gradients on one saved case (used by benchmarks/batchnorm.py).

Runs in a scratch environment that has breaching (never a fedleak dependency); it imports
only torch, torchvision and breaching, so fedleak need not be installed there::

    python3 -m venv /tmp/breach-venv
    /tmp/breach-venv/bin/pip install torch==2.13.0
    /tmp/breach-venv/bin/pip install --no-deps breaching hydra-core omegaconf \\
        antlr4-python3-runtime==4.9.3 pyyaml scipy numpy pillow tqdm lpips torchvision==0.28.0

Input (``torch.save`` of a dict): ``model`` (the module, train mode), ``gradients`` (list, in
``model.parameters()`` order), ``labels`` or ``None`` (``None``: breaching infers them with its
shipped ``label_strategy``), ``num_data_points``, ``iterations``. Output: ``data``, ``labels``,
``seconds``. Optional: ``attack`` (a breaching attack config, default ``invertinggradients``),
``device`` (default ``cpu``). The attack runs at breaching's shipped settings except
``max_iterations`` (``None``: the shipped count too); the data normalisation is the identity,
so both tools optimise in the same [0, 1] pixel box.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import time
import warnings
from typing import Any

import torch


def _declare_torchvision_ops() -> None:
    """The CUDA torchvision wheel next to a CPU torch needs its op schemas declared first."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError:
        lib = torch.library.Library("torchvision", "FRAGMENT")
        schema = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
        lib.define("nms" + schema)
        lib.define("qnms" + schema)
        globals()["_TORCHVISION_OPS"] = lib


class _Metadata(dict[str, Any]):
    """breaching reads the server's metadata both as attributes and as items."""

    def __getattr__(self, key: str) -> Any:
        return self[key]


def main(case_path: str, out_path: str, threads: int) -> None:
    """Attack the case in ``case_path`` and save the reconstruction to ``out_path``."""
    torch.set_num_threads(threads)
    _declare_torchvision_ops()
    warnings.filterwarnings("ignore")
    logging.disable(logging.INFO)
    import breaching

    case: dict[str, Any] = torch.load(case_path, weights_only=False)
    device = torch.device(case.get("device", "cpu"))
    model = case["model"].to(device)
    overrides = [f"optim.callback={10**9}"]
    if case["iterations"] is not None:
        overrides.append(f"optim.max_iterations={case['iterations']}")
    with contextlib.redirect_stdout(io.StringIO()):  # breaching prints what it loads
        cfg = breaching.get_attack_config(case.get("attack", "invertinggradients"), overrides)
    setup = {"device": device, "dtype": torch.float}
    attacker = breaching.attacks.prepare_attack(model, torch.nn.CrossEntropyLoss(), cfg, setup)
    shape = tuple(case["input_shape"])
    server_payload = [
        {
            "parameters": [p.detach().clone() for p in model.parameters()],
            "buffers": None,
            "metadata": _Metadata(
                shape=shape,
                modality="vision",
                mean=[0.0] * shape[0],
                std=[1.0] * shape[0],
                task="classification",
                classes=case.get("num_classes"),
            ),
        }
    ]
    shared_data = [
        {
            "gradients": [g.to(device) for g in case["gradients"]],
            "buffers": None,
            "metadata": {
                "num_data_points": case["num_data_points"],
                "labels": None if case["labels"] is None else case["labels"].to(device),
                "local_hyperparams": None,
            },
        }
    ]
    torch.manual_seed(case.get("seed", 0))
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        output, _ = attacker.reconstruct(server_payload, shared_data, {}, dryrun=False)
    seconds = time.perf_counter() - start
    labels = output["labels"]
    torch.save(
        {
            "data": output["data"].detach().cpu(),
            "labels": labels.cpu() if isinstance(labels, torch.Tensor) else labels,
            "seconds": seconds,
            "iterations": int(cfg.optim.max_iterations),
        },
        out_path,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
