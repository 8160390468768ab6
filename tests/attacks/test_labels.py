"""iDLG label extraction (seed 003) and batch label counts."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from attacks.label_restoration import infer_labels
from attacks.labels import find_last_layer, idlg_label, infer_label_counts
from attacks.losses import model_gradient, training_loss
from attacks.types import InterceptedUpdate, TrainingHyperparams

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
