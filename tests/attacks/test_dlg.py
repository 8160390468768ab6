"""DLG (Zhu et al. 2019): joint L-BFGS over dummy data and soft labels, guarded against blow-ups."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fedleak.attacks import (
    AttackFailure,
    DLGAttack,
    DLGConfig,
    InterceptedUpdate,
    Reconstruction,
    create_attack,
    execute_attack,
)
from fedleak.attacks.dlg import l2_matching_loss, match_gradients_lbfgs
from tests.attacks.cases import (  # one_thread: a fixture, applied to the whole module
    CPU,
    NUM_CLASSES,
    cat_image,
    lenet,
    one_thread,  # noqa: F401
    psnr,
    sgd_update,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("seed", range(2))
def test_reconstruction_beats_its_initialisation_by_10_db_on_lenet(seed: int) -> None:
    """Acceptance: one 32x32 image through the sigmoid LeNet of DLG, default initialisation."""
    model = lenet(seed)
    image = cat_image()
    update = sgd_update(model, image, torch.tensor([3]))
    result = execute_attack(
        create_attack("dlg", {"iterations": 100}), model, update, device=CPU, seed=seed
    )
    assert isinstance(result, Reconstruction), result
    assert result.labels.tolist() == [3]  # the soft label's argmax
    assert result.inputs.shape == (1, 3, 32, 32)
    assert result.inputs.min() >= 0.0 and result.inputs.max() <= 1.0
    assert result.initial_inputs is not None
    truth = image.numpy()
    assert psnr(result.inputs, truth) >= psnr(result.initial_inputs, truth) + 10.0
    assert result.iterations == 100


def test_soft_labels_recover_a_batch() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.Sigmoid(), nn.Linear(16, NUM_CLASSES)).double()
    x = torch.rand(2, 12, dtype=torch.float64)
    result = DLGAttack(DLGConfig(iterations=300)).reconstruct(
        model, sgd_update(model, x, torch.tensor([4, 8])), device=CPU, seed=0
    )
    assert sorted(result.labels.tolist()) == [4, 8]
    assert result.labels.dtype == np.int64


def test_disclosed_labels_fix_the_labels() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.Sigmoid(), nn.Linear(16, NUM_CLASSES))
    update = sgd_update(model, torch.rand(2, 12), torch.tensor([4, 8]), np.array([8, 4]))
    result = DLGAttack(DLGConfig(iterations=5)).reconstruct(model, update, device=CPU, seed=0)
    assert result.labels.tolist() == [8, 4]
    assert result.inputs.shape == (2, 12)


def test_deterministic_under_seed() -> None:
    model = lenet(0)
    update = sgd_update(model, cat_image(), torch.tensor([1]))
    attack = DLGAttack(DLGConfig(iterations=5))
    first = attack.reconstruct(model, update, device=CPU, seed=7)
    second = attack.reconstruct(model, update, device=CPU, seed=7)
    other = attack.reconstruct(model, update, device=CPU, seed=8)
    np.testing.assert_array_equal(first.inputs, second.inputs)
    assert not np.array_equal(first.inputs, other.inputs)
    assert first.initial_inputs is not None
    assert first.initial_inputs.shape == first.inputs.shape


def test_a_blown_up_search_returns_its_best_finite_iterate() -> None:
    # log(2 - v) is NaN past v = 2: an oversized L-BFGS step lands there
    v = torch.zeros(3, dtype=torch.float64, requires_grad=True)

    def objective() -> torch.Tensor:
        return (v - 1.9).pow(2).sum() - 1e-3 * torch.log(2.0 - v).sum()

    start = float(objective().detach())
    result = match_gradients_lbfgs(objective, [v], DLGConfig(iterations=50, lr=50.0))
    assert result.recoveries >= 1
    assert math.isfinite(result.loss) and result.loss < start
    assert bool(torch.isfinite(result.variables[0]).all())
    assert float(objective().detach()) == pytest.approx(
        result.loss
    )  # v is left at the best iterate


def test_huge_steps_still_give_a_finite_reconstruction() -> None:
    model = lenet(1)
    image = cat_image()
    update = sgd_update(model, image, torch.tensor([5]))
    result = DLGAttack(DLGConfig(iterations=20, lr=1e4)).reconstruct(
        model, update, device=CPU, seed=0
    )
    assert np.isfinite(result.inputs).all()
    assert math.isfinite(float(result.details["matching_loss"]))


def test_line_search_option_converges() -> None:
    model = lenet(0)
    image = cat_image()
    update = sgd_update(model, image, torch.tensor([3]), np.array([3]))
    result = DLGAttack(DLGConfig(iterations=60, line_search=True)).reconstruct(
        model, update, device=CPU, seed=0
    )
    assert result.initial_inputs is not None
    truth = image.numpy()
    assert psnr(result.inputs, truth) >= psnr(result.initial_inputs, truth) + 5.0


def test_l2_matching_loss_is_relative() -> None:
    observed = [torch.ones(2, 2), torch.ones(3)]
    assert float(l2_matching_loss(observed, observed)) == 0.0
    doubled = [2 * o for o in observed]
    assert float(l2_matching_loss(doubled, observed)) == pytest.approx(1.0)


def test_not_applicable_for_an_all_zero_update() -> None:
    model = lenet(0)
    update = sgd_update(model, cat_image(), torch.tensor([1]))
    update = InterceptedUpdate(**{**update.__dict__, "client_params": update.global_params})
    result = execute_attack(DLGAttack(), model, update, device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "not_applicable"


@pytest.mark.parametrize(("key", "value"), [("iterations", 0), ("history_size", 0), ("lr", 0.0)])
def test_erroneous_config(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=key):
        create_attack("dlg", {key: value})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda() -> None:
    device = torch.device("cuda")
    model = lenet(0)
    image = cat_image()
    update = sgd_update(model, image, torch.tensor([2]))
    result = execute_attack(
        create_attack("dlg", {"iterations": 100}), model.to(device), update, device=device, seed=0
    )
    assert isinstance(result, Reconstruction), result
    assert result.labels.tolist() == [2]
    assert result.initial_inputs is not None
    truth = image.numpy()
    assert psnr(result.inputs, truth) >= psnr(result.initial_inputs, truth) + 10.0
