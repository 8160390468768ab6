"""Shared cases for the attack tests: a real FedSGD update, LeNet, a real photograph."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data, transform
from torch import nn

from fedleak.attacks import InterceptedUpdate, TrainingHyperparams
from fedleak.attacks.losses import model_gradient
from fedleak.simulator.data.datasets import load_dataset
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


def trained_photo_mlp(
    batch: int,
) -> tuple[nn.Module, InterceptedUpdate, torch.Tensor, torch.Tensor]:
    """An MLP trained for 10 rounds (SGD, 32 photos each) on the offline photos, and one
    client's FedSGD update on ``batch`` other photos: the model, update, inputs and labels."""
    train = load_dataset("photos", data_dir=Path("data"), seed=0, test_fraction=0.2).train
    model = build_model(ModelSpec("mlp", (3, 32, 32), train.num_classes), seed=0).train()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(train.labels))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(10):
        idx = rng.choice(order[batch:], size=32, replace=False)
        optimiser.zero_grad()
        logits = model(torch.from_numpy(train.inputs[idx]))
        nn.functional.cross_entropy(logits, torch.from_numpy(train.labels[idx])).backward()
        optimiser.step()
    x = torch.from_numpy(train.inputs[order[:batch]])
    y = torch.from_numpy(train.labels[order[:batch]])
    update = sgd_update(model, x, y)
    return model, replace(update, num_classes=train.num_classes), x, y
