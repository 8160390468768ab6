"""SPEAR behind a narrow head on natural photos: the affine prior, completion, B = 16 exact."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from fedleak.attacks import execute_attack
from fedleak.attacks.spear import SpearAttack, SpearConfig
from fedleak.attacks.spear_binary import TwoValued
from fedleak.attacks.spear_head import affine_prior, completed_columns, head_space
from fedleak.attacks.spear_solve import LayerFactors, factorise
from fedleak.attacks.spear_state import DualData
from fedleak.attacks.types import AttackFailure, InterceptedUpdate
from fedleak.simulator.data.datasets import load_dataset
from fedleak.simulator.models.architectures import ModelSpec, build_model
from tests.attacks.cases import (  # noqa: F401  (one_thread: a fixture)
    CPU,
    one_thread,
    psnr,
    sgd_update,
    trained_photo_mlp,
)

pytestmark = pytest.mark.usefixtures("one_thread")

BATCH = 16


@dataclass(frozen=True)
class PhotoCase:
    """An untrained MLP's update on 16 photos (6 classes: the gradient at the ReLU has rank 5),
    its factorisation, and each sample's true column of ``Q`` and ReLU pattern."""

    model: nn.Sequential
    update: InterceptedUpdate
    x: torch.Tensor
    y: torch.Tensor
    factors: LayerFactors
    dual: DualData
    columns: torch.Tensor  # (B, B): sample i's column of Q in L's coordinates
    active: torch.Tensor  # (B, M'): sample i's ReLU pattern on the live rows


@pytest.fixture(scope="module")
def photos() -> PhotoCase:
    train = load_dataset("photos", data_dir=Path("data"), seed=0, test_fraction=0.2).train
    model = build_model(ModelSpec("mlp", (3, 32, 32), train.num_classes), seed=0)
    assert isinstance(model, nn.Sequential)
    picked = np.random.default_rng(0).permutation(len(train.labels))[:BATCH]
    x, y = torch.from_numpy(train.inputs[picked]), torch.from_numpy(train.labels[picked])
    update = replace(sgd_update(model, x, y), num_classes=train.num_classes)
    pseudo = update.pseudo_gradient()
    weight_grad, bias_grad = torch.as_tensor(pseudo["1.weight"]), torch.as_tensor(pseudo["1.bias"])
    grad = torch.cat([weight_grad, bias_grad[:, None]], 1)
    factors = factorise(grad.double(), BATCH, "1")
    live = factors.live
    first, head = model[1], model[3]
    assert isinstance(first, nn.Linear) and isinstance(head, nn.Linear)
    weight, bias = first.weight.detach().double(), first.bias.detach().double()
    z = x.double().reshape(BATCH, -1) @ weight.T + bias
    with torch.no_grad():
        delta = torch.softmax(model(x).double(), 1) - nn.functional.one_hot(y.long(), 6)
    at_z = (z > 0) * (delta @ head.weight.detach().double())  # (B, M), up to 1/B
    dual = DualData(factors.right, weight[live], bias[live], factors.grad[live])
    columns = factors.basis.T @ at_z.T
    return PhotoCase(model, update, x, y, factors, dual, columns, (z > 0)[:, live])


def test_the_affine_prior_guesses_the_side_of_the_neurons_it_is_sure_of(
    photos: PhotoCase,
) -> None:
    """The batch's least-norm affine point says on which side most samples are: where the
    prior is at least 0.9 sure, the majority of the 16 photos agrees on every neuron."""
    prior = affine_prior(photos.dual)
    assert prior is not None
    rate = photos.active.double().mean(dim=0)
    sure = (prior - 0.5).abs() >= 0.4
    assert int(sure.sum()) >= 20
    assert torch.equal(prior[sure] > 0.5, rate[sure] > 0.5)


def test_the_last_two_columns_are_completed_from_the_others(photos: PhotoCase) -> None:
    """With the columns of 14 samples known, the other two samples' inputs lie on a line;
    their ReLU patterns along it give their columns, each pinned by every row's form."""
    live = photos.factors.live
    first = photos.model[1]
    assert isinstance(first, nn.Linear)
    space = head_space(photos.model, first, photos.update)
    assert space is not None
    known = [TwoValued(photos.columns[:, i], photos.active[i]) for i in range(BATCH - 2)]
    found = completed_columns(
        known, photos.factors.basis[live], space[live], photos.factors.tol, photos.dual,
        time.monotonic() + 60,
    )  # fmt: skip
    masks = {column.active.numpy().tobytes() for column in found}
    for missing in (BATCH - 2, BATCH - 1):
        assert photos.active[missing].numpy().tobytes() in masks
        (column,) = [c for c in found if torch.equal(c.active, photos.active[missing])]
        truth = photos.columns[:, missing]
        cosine = torch.dot(column.q, truth) / (column.q.norm() * truth.norm())
        assert float(cosine.abs()) == pytest.approx(1.0, abs=1e-9)


def test_an_untrained_mlp_on_photos_gives_its_batch_of_16_back_exactly(
    photos: PhotoCase,
) -> None:
    """The case that failed at B = 16 (one mixture found, the last column not in time): the
    affine prior finds the first columns sooner, completion the last two."""
    # 15 s on one idle core at the default 30 s budget; the search stops once the batch is
    # assembled, so a longer budget only keeps a loaded CI machine from running out
    attack = SpearAttack(SpearConfig(time_budget_s=120.0))
    result = attack.reconstruct(photos.model, photos.update, device=CPU, seed=0)
    assert result.details["assembled"] == 1 and result.details["reproduces"] == 1
    truth = photos.x.double().reshape(BATCH, -1).numpy()
    found = result.inputs.reshape(BATCH, -1)
    cost = ((truth[:, None] - found[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    assert min(psnr(truth[r], found[c]) for r, c in zip(rows, cols, strict=True)) >= 100.0
    assert sorted(result.labels.tolist()) == sorted(photos.y.tolist())


def test_a_trained_batch_whose_photos_share_relu_patterns_is_reported_not_unique() -> None:
    """After 10 rounds of training, 16 photos have only 14 ReLU patterns on the live neurons:
    mixtures of the photos in a pair pass every check, the search finds far more than 4
    columns per photo and stops, and the failure says the batch is not unique (it used to
    say: raise time_budget_s, after the sparse search had spent the rest of the budget)."""
    model, update, _, _ = trained_photo_mlp(BATCH)
    outcome = execute_attack(SpearAttack(), model, update, device=CPU, seed=0)
    assert isinstance(outcome, AttackFailure) and outcome.status == "failed"
    assert "the batch is not unique" in outcome.reason
    assert "raise time_budget_s" not in outcome.reason
    assert "(0 submatrices" in outcome.reason  # the sparse search did not spend the budget
