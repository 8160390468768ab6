"""Label extraction: iDLG (Zhao et al. 2020), batch label restoration, and its primitives."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from skimage import data, transform
from sklearn.datasets import load_digits
from torch import nn

from fedleak.attacks.label_restoration import (
    LogitLayer,
    infer_labels,
    restore_label_counts,
    restore_labels,
)
from fedleak.attacks.labels import find_last_layer, idlg_label, infer_label_counts
from fedleak.attacks.losses import model_gradient, training_loss
from fedleak.attacks.types import InterceptedUpdate, TrainingHyperparams
from fedleak.simulator.models.architectures import ModelSpec, build_model

NUM_CLASSES = 10


def sgd_update(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> InterceptedUpdate:
    lr = 0.1
    names = [n for n, _ in model.named_parameters()]
    grads = dict(zip(names, model_gradient(model, "cross_entropy", x, y), strict=True))
    global_params = OrderedDict(
        (k, v.detach().numpy().copy()) for k, v in model.state_dict().items()
    )
    client_params = OrderedDict(
        (k, v - lr * grads[k].detach().numpy()) for k, v in global_params.items()
    )
    hp = TrainingHyperparams("fedsgd", lr, x.shape[0], 1)
    return InterceptedUpdate(
        1, 1, global_params, client_params, x.shape[0], hp, tuple(x.shape[1:]), NUM_CLASSES
    )


def relu_mlp(seed: int, *, last_bias: bool = True, last_scale: float = 1.0) -> nn.Module:
    torch.manual_seed(seed)
    last = nn.Linear(32, NUM_CLASSES, bias=last_bias)
    with torch.no_grad():
        last.weight.mul_(last_scale)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.ReLU(), last).double()


@pytest.mark.parametrize("last_bias", [True, False])
def test_idlg_is_exact_for_single_samples(last_bias: bool) -> None:
    correct = 0
    for case in range(20):
        model = relu_mlp(case, last_bias=last_bias)
        gen = torch.Generator().manual_seed(100 + case)
        x = torch.rand((1, 3, 4, 4), generator=gen, dtype=torch.float64)
        y = torch.randint(NUM_CLASSES, (1,), generator=gen)
        labels = infer_labels(model, sgd_update(model, x, y))
        assert labels.dtype == np.int64 and labels.shape == (1,)
        correct += int(labels[0] == y.item())
    assert correct == 20


def test_idlg_prefers_bias_gradient_when_row_sums_mislead() -> None:
    # tanh activations may be negative: row sums lose the sign, the bias gradient keeps it
    weight_grad = torch.tensor([[0.5, -0.2], [-0.1, 0.0], [0.1, 0.3]])
    bias_grad = torch.tensor([0.2, 0.3, -0.5])
    assert idlg_label(weight_grad) == 1
    assert idlg_label(weight_grad, bias_grad) == 2


@pytest.mark.parametrize("last_bias", [True, False])
@pytest.mark.parametrize(
    "truth", [[0, 3, 5, 9], [1, 1, 1, 3, 3, 7], [2, 2, 2, 2], [0, 1, 2, 3, 4, 5, 6, 7]]
)
def test_label_counts_on_untrained_model(truth: list[int], last_bias: bool) -> None:
    # near-uniform predictions (small last layer), the regime the count estimate assumes
    model = relu_mlp(0, last_bias=last_bias, last_scale=0.01)
    x = torch.rand(
        (len(truth), 3, 4, 4), generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    labels = infer_labels(model, sgd_update(model, x, torch.tensor(truth)))
    assert labels.dtype == np.int64
    assert labels.tolist() == sorted(truth)


def test_label_counts_return_batch_size_labels() -> None:
    weight_grad = torch.zeros(4, 3)
    bias_grad = torch.tensor([0.1, -0.3, 0.1, 0.1])
    labels = infer_label_counts(weight_grad, bias_grad, 5)
    assert labels.shape == (5,)
    assert 1 in labels.tolist()
    with pytest.raises(ValueError, match="batch_size"):
        infer_label_counts(weight_grad, bias_grad, 0)


def test_find_last_layer() -> None:
    model = relu_mlp(0)
    layer = find_last_layer(model, NUM_CLASSES)
    assert (layer.weight_name, layer.bias_name) == ("3.weight", "3.bias")
    assert find_last_layer(relu_mlp(0, last_bias=False), NUM_CLASSES).bias_index is None
    with pytest.raises(ValueError, match="num_classes=7"):
        find_last_layer(model, 7)


def test_training_loss_soft_labels_match_hard_labels() -> None:
    logits = torch.randn(4, NUM_CLASSES, dtype=torch.float64)
    hard = torch.tensor([0, 3, 3, 9])
    soft = nn.functional.one_hot(hard, NUM_CLASSES).double()
    for name in ("cross_entropy", "mse"):
        assert torch.allclose(training_loss(name, logits, hard), training_loss(name, logits, soft))
    expected = (logits.softmax(-1) - soft).pow(2).sum(-1).mean()
    assert torch.allclose(training_loss("mse", logits, hard), expected)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        training_loss("hinge", logits, hard)


def test_model_gradient_matches_intercepted_update() -> None:
    model = relu_mlp(3)
    x = torch.rand((2, 3, 4, 4), dtype=torch.float64)
    y = torch.tensor([4, 6])
    update = sgd_update(model, x, y)
    loss = training_loss("cross_entropy", model(x), y)
    reference = torch.autograd.grad(loss, list(model.parameters()))
    pseudo = update.pseudo_gradient()
    for (name, _), ref in zip(model.named_parameters(), reference, strict=True):
        assert torch.allclose(pseudo[name], ref, rtol=1e-6, atol=1e-12)


_DIGITS = load_digits()
_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")


def _photo_crops(rng: np.random.Generator, size: int) -> torch.Tensor:
    """``size`` 32x32 crops of scikit-image's bundled colour photos, ``(B, 3, 32, 32)``."""
    crops = []
    for _ in range(size):
        image = getattr(data, _PHOTOS[rng.integers(len(_PHOTOS))])()[..., :3]
        scale = 64 / min(image.shape[:2])
        shape = (round(image.shape[0] * scale), round(image.shape[1] * scale))
        small = transform.resize(image, shape, anti_aliasing=True)
        top, left = rng.integers(0, shape[0] - 31), rng.integers(0, shape[1] - 31)
        crops.append(np.transpose(small[top : top + 32, left : left + 32], (2, 0, 1)))
    return torch.tensor(np.stack(crops), dtype=torch.float32)


def _batch(trial: int, size: int, repeated: bool) -> tuple[nn.Module, torch.Tensor, np.ndarray]:
    """An untrained network (five architectures in turn) and a batch with its labels."""
    rng = np.random.default_rng(1000 * size + trial + (500 if repeated else 0))
    if repeated:  # about half as many classes as samples, each present at least once
        classes = rng.choice(NUM_CLASSES, size=max(1, size // 2), replace=False)
        labels = np.concatenate([classes, rng.choice(classes, size=size - len(classes))])
    else:
        labels = rng.choice(NUM_CLASSES, size=size, replace=False)
    name = ("mlp", "fcnn", "lenet", "cnn", "lenet-photos")[trial % 5]
    if name == "lenet-photos":
        model = build_model(ModelSpec("lenet", (3, 32, 32), NUM_CLASSES), seed=trial)
        return model, _photo_crops(rng, size), labels
    picks = [rng.choice(np.flatnonzero(_DIGITS.target == c)) for c in labels]
    x = torch.tensor(_DIGITS.images[picks] / 16.0, dtype=torch.float32)[:, None]
    return build_model(ModelSpec(name, (1, 8, 8), NUM_CLASSES), seed=trial), x, labels


@pytest.mark.parametrize("repeated", [False, True], ids=["distinct", "repeated"])
@pytest.mark.parametrize("size", [2, 4, 8])
def test_restoration_is_exact_on_20_untrained_network_batches(size: int, repeated: bool) -> None:
    """mlp, fcnn, lenet, cnn on digits and lenet on photo crops; float32 updates."""
    for trial in range(20):
        model, x, truth = _batch(trial, size, repeated)
        restored = restore_labels(model, sgd_update(model, x, torch.from_numpy(truth)))
        assert restored.labels.tolist() == sorted(truth.tolist()), (trial, restored)
        assert restored.confidence.shape == (size,)
        assert np.all((restored.confidence >= 0) & (restored.confidence <= 1))
        if not repeated:  # distinct labels: the class-wise fit is exact
            assert restored.exact and restored.confidence.tolist() == [1.0] * size


def _skewed_lenet() -> nn.Module:
    """An untrained LeNet whose logits favour class 5 (as a random init may)."""
    model = build_model(ModelSpec("lenet", (3, 32, 32), NUM_CLASSES), seed=0)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.bias[5] += 2.5
    return model


def test_present_class_with_a_positive_bias_gradient_is_restored() -> None:
    """Four photos labelled [0, 1, 3, 5]: the model gives class 5 so much probability
    (summed over the batch, more than its one sample) that its bias gradient is positive.
    The uniform-prediction estimate then trades 5 for another class; the fit does not."""
    model = _skewed_lenet()
    truth = torch.tensor([0, 1, 3, 5])
    x = _photo_crops(np.random.default_rng(3), 4)
    update = sgd_update(model, x, truth)
    layer = find_last_layer(model, NUM_CLASSES)
    bias_grad = update.pseudo_gradient()[str(layer.bias_name)]
    assert float(bias_grad[5]) > 0  # the case the sign rule misses
    weight_grad = update.pseudo_gradient()[layer.weight_name]
    assert infer_label_counts(weight_grad, bias_grad, 4).tolist() != [0, 1, 3, 5]
    restored = restore_labels(model, update)
    assert restored.labels.tolist() == [0, 1, 3, 5] and restored.exact


def test_restoration_without_a_bias_falls_back_to_the_count_estimate() -> None:
    model = relu_mlp(0, last_bias=False, last_scale=0.01)
    x = torch.rand((4, 3, 4, 4), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    restored = restore_labels(model, sgd_update(model, x, torch.tensor([0, 3, 3, 9])))
    assert restored.labels.tolist() == [0, 3, 3, 9]
    assert math.isnan(restored.residual) and not restored.exact
    # each class's first label is certain by the sign rule; the repeated 3 is a guess
    assert restored.confidence.tolist() == [1.0, 1.0, 0.5, 1.0]


def test_inexact_fits_spread_their_confidence() -> None:
    """A gradient two count vectors fit about equally well (a zero classifier, no feature
    signal): the fit is not exact, and the label they disagree on gets confidence < 1."""
    layer = LogitLayer(
        weight_grad=torch.zeros(3, 4, dtype=torch.float64),
        bias_grad=torch.tensor([-0.1, 0.05, 0.05], dtype=torch.float64),
        weight=torch.zeros(3, 4, dtype=torch.float64),
        bias=torch.zeros(3, dtype=torch.float64),
    )
    restored = restore_label_counts(layer, 2)
    assert not restored.exact
    assert restored.labels.shape == (2,) and 0 in restored.labels.tolist()
    assert float(restored.confidence.min()) < 1.0
    with pytest.raises(ValueError, match="batch_size"):
        restore_label_counts(layer, 0)
