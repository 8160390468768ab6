"""iDLG (Zhao et al. 2020): exact labels from the gradient's sign, then L2 gradient matching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedleak.attacks import (
    AttackFailure,
    IDLGAttack,
    IDLGConfig,
    InterceptedUpdate,
    Reconstruction,
    create_attack,
    execute_attack,
)
from fedleak.simulator.models.architectures import ModelSpec, build_model
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


def test_label_is_exact_for_single_samples() -> None:
    """Acceptance: 100 % label accuracy for B = 1 over 20 random cases (Zhao et al. 2020)."""
    correct = 0
    for case in range(20):
        spec = ModelSpec(
            ("lenet", "mlp")[case % 2],
            (3, 16, 16),
            NUM_CLASSES,
            activation=("sigmoid", "relu")[case // 10],
        )
        model = build_model(spec, seed=case)
        gen = torch.Generator().manual_seed(100 + case)
        x = torch.rand((1, 3, 16, 16), generator=gen)
        y = torch.randint(NUM_CLASSES, (1,), generator=gen)
        result = execute_attack(
            create_attack("idlg", {"iterations": 1}),
            model,
            sgd_update(model, x, y),
            device=CPU,
            seed=case,
        )
        assert isinstance(result, Reconstruction), result
        assert result.labels.dtype == np.int64 and result.labels.shape == (1,)
        correct += int(result.labels[0] == y.item())
    assert correct == 20


@pytest.mark.parametrize("seed", range(2))
def test_reconstruction_beats_its_initialisation_by_10_db_on_lenet(seed: int) -> None:
    """Acceptance: one 32x32 image through the sigmoid LeNet of DLG, default initialisation."""
    model = lenet(seed)
    image = cat_image()
    update = sgd_update(model, image, torch.tensor([3]))
    result = execute_attack(
        create_attack("idlg", {"iterations": 100}), model, update, device=CPU, seed=seed
    )
    assert isinstance(result, Reconstruction), result
    assert result.labels.tolist() == [3]
    assert result.inputs.shape == (1, 3, 32, 32)
    assert result.inputs.min() >= 0.0 and result.inputs.max() <= 1.0
    assert result.initial_inputs is not None
    truth = image.numpy()
    assert psnr(result.inputs, truth) >= psnr(result.initial_inputs, truth) + 10.0
    assert float(result.details["matching_loss"]) < 1e-7


def test_batch_labels_come_from_label_counts() -> None:
    torch.manual_seed(0)
    last = nn.Linear(16, NUM_CLASSES)
    with torch.no_grad():
        last.weight.mul_(0.01)  # near-uniform predictions, where counting is reliable
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), last)
    x = torch.rand(3, 12)
    update = sgd_update(model, x, torch.tensor([7, 1, 4]))
    result = IDLGAttack(IDLGConfig(iterations=5)).reconstruct(model, update, device=CPU, seed=0)
    assert result.labels.tolist() == [1, 4, 7]
    assert result.inputs.shape == (3, 12)


def test_disclosed_labels_are_used() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.Sigmoid(), nn.Linear(16, NUM_CLASSES))
    update = sgd_update(model, torch.rand(2, 12), torch.tensor([4, 8]), np.array([8, 4]))
    result = IDLGAttack(IDLGConfig(iterations=5)).reconstruct(model, update, device=CPU, seed=0)
    assert result.labels.tolist() == [8, 4]


def test_deterministic_under_seed_and_reports_its_start() -> None:
    model = lenet(0)
    update = sgd_update(model, cat_image(), torch.tensor([1]))
    attack = IDLGAttack(IDLGConfig(iterations=5))
    first = attack.reconstruct(model, update, device=CPU, seed=7)
    second = attack.reconstruct(model, update, device=CPU, seed=7)
    other = attack.reconstruct(model, update, device=CPU, seed=8)
    np.testing.assert_array_equal(first.inputs, second.inputs)
    assert first.initial_inputs is not None and other.initial_inputs is not None
    np.testing.assert_array_equal(first.initial_inputs, second.initial_inputs)
    assert not np.array_equal(first.initial_inputs, other.initial_inputs)
    assert not np.array_equal(first.inputs, first.initial_inputs)
    assert first.iterations == 5


def test_model_gradients_stay_untouched() -> None:
    model = lenet(0)
    update = sgd_update(model, cat_image(), torch.tensor([1]))
    IDLGAttack(IDLGConfig(iterations=3)).reconstruct(model, update, device=CPU, seed=0)
    assert all(p.grad is None for p in model.parameters())


def test_not_applicable_for_an_all_zero_update() -> None:
    model = lenet(0)
    update = sgd_update(model, cat_image(), torch.tensor([1]))
    update = InterceptedUpdate(**{**update.__dict__, "client_params": update.global_params})
    result = execute_attack(IDLGAttack(), model, update, device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "not_applicable"


@pytest.mark.parametrize(("key", "value"), [("iterations", 0), ("history_size", 0), ("lr", 0.0)])
def test_erroneous_config(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=key):
        create_attack("idlg", {key: value})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda() -> None:
    device = torch.device("cuda")
    model = lenet(0)
    image = cat_image()
    update = sgd_update(model, image, torch.tensor([2]))
    result = execute_attack(
        create_attack("idlg", {"iterations": 100}), model.to(device), update, device=device, seed=0
    )
    assert isinstance(result, Reconstruction), result
    assert result.labels.tolist() == [2]
    assert result.initial_inputs is not None
    truth = image.numpy()
    assert psnr(result.inputs, truth) >= psnr(result.initial_inputs, truth) + 10.0
