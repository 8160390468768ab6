"""Shared cases for the attack tests: a real FedSGD update, LeNet, a real photograph."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from skimage import data, transform
from torch import nn

from fedleak.attacks import InterceptedUpdate, TrainingHyperparams
from fedleak.attacks.losses import model_gradient
from fedleak.simulator.models.architectures import ModelSpec, build_model

CPU = torch.device("cpu")
NUM_CLASSES = 10


@pytest.fixture
def one_thread() -> Iterator[None]:
    """A 32x32 LeNet is too small to gain from threads; on a busy CI box they only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sgd_update(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, disclosed: np.ndarray | None = None
) -> InterceptedUpdate:
    lr = 0.1
    names = [n for n, _ in model.named_parameters()]
    grads = dict(zip(names, model_gradient(model, "cross_entropy", x, y), strict=True))
    global_params = OrderedDict(
        (k, v.detach().cpu().numpy().copy()) for k, v in model.state_dict().items()
    )
    client_params = OrderedDict(
        (k, v - lr * grads[k].detach().cpu().numpy()) for k, v in global_params.items()
    )
    hp = TrainingHyperparams("fedsgd", lr, x.shape[0], 1)
    return InterceptedUpdate(
        1,
        1,
        global_params,
        client_params,
        x.shape[0],
        hp,
        tuple(x.shape[1:]),
        NUM_CLASSES,
        disclosed,
    )


def lenet(seed: int) -> nn.Module:
    return build_model(ModelSpec("lenet", (3, 32, 32), NUM_CLASSES), seed=seed)


def cat_image() -> torch.Tensor:
    """skimage's bundled ``chelsea`` photograph, resized to 32x32, shape ``(1, 3, 32, 32)``."""
    image = transform.resize(data.chelsea(), (32, 32), anti_aliasing=True)
    return torch.tensor(image, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(1.0 / float(np.mean((a - b) ** 2)))
