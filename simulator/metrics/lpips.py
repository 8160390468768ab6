"""LPIPS of each reconstruction, through torchmetrics, only where the backbone weights exist.

LPIPS (Zhang, Isola, Efros, Shechtman and Wang, "The Unreasonable Effectiveness of Deep
Features as a Perceptual Metric", CVPR 2018, arXiv:1801.03924) compares images in the
feature space of an ImageNet network; breaching, SPEAR and Plato report it beside PSNR.
torchmetrics ships LPIPS' small linear heads but takes the AlexNet backbone from
torchvision, which downloads it on first use. fedleak never downloads: the backbone is read
from ``report.lpips_weights`` (the checkpoint file, or a folder holding it) or from
torch's hub cache (``$TORCH_HOME/hub/checkpoints/``), and when neither has it the report
says so in one line.

Images are compared at 64 x 64 (bilinear), grey images as three equal channels: AlexNet's
11 x 11 stride-4 first layer needs more pixels than an 8 x 8 digit has.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from fedleak.simulator.errors import FedleakError

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
"""torchvision's file name of ``AlexNet_Weights.IMAGENET1K_V1`` (what LPIPS 'alex' uses)."""
LPIPS_SIZE = 64

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``scorer(truth, recon)``: per-sample LPIPS of two (N, C, H, W) batches in [0, 1]."""


class LpipsUnavailableError(FedleakError, RuntimeError):
    """No backbone weights where fedleak looks; the message says where that was."""


def weights_path(setting: str | None) -> Path:
    """Where the AlexNet checkpoint is looked for (see the module docstring)."""
    if setting:
        path = Path(setting).expanduser()
        return path / ALEXNET_FILE if path.is_dir() else path
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def _load_backbone(net: object, path: Path) -> None:
    """Copy the checkpoint's AlexNet ``features`` into LPIPS' five backbone slices."""
    import torch
    import torchvision

    features = torchvision.models.alexnet(weights=None).features
    state = torch.load(path, map_location="cpu", weights_only=True)
    prefix = "features."
    features.load_state_dict(
        {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    )
    for index in range(1, 6):
        for name, module in getattr(net, f"slice{index}").named_children():
            module.load_state_dict(features[int(name)].state_dict())


def lpips_scorer(setting: str | None) -> Scorer:
    """A scorer using the backbone at :func:`weights_path` (``setting``).

    Raises
    ------
    LpipsUnavailableError
        When the checkpoint is missing or does not load; nothing is downloaded.
    """
    path = weights_path(setting)
    if not path.is_file():
        raise LpipsUnavailableError(
            f"LPIPS not computed: no weights at {path} (set report.lpips_weights)"
        )
    import torch
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    # pnet_rand: torchvision builds AlexNet without weights (no download); the checkpoint
    # is loaded below. pretrained: LPIPS' linear heads, shipped inside torchmetrics.
    model = _NoTrainLpips(net="alex", pretrained=True, pnet_rand=True)
    try:
        _load_backbone(model.net, path)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise LpipsUnavailableError(f"LPIPS not computed: {path} is not AlexNet's: {exc}") from None

    def score(truth: np.ndarray, recon: np.ndarray) -> np.ndarray:
        def prepare(batch: np.ndarray) -> torch.Tensor:
            x = torch.as_tensor(np.clip(batch, 0.0, 1.0), dtype=torch.float32)
            x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]
            return torch.nn.functional.interpolate(
                x, size=(LPIPS_SIZE, LPIPS_SIZE), mode="bilinear", align_corners=False
            )

        with torch.no_grad():
            values = model(prepare(truth), prepare(recon), normalize=True)
        return values.reshape(-1).numpy().astype(np.float64)

    return score
