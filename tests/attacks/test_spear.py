"""SPEAR (Dimitrov et al. 2024): exact recovery of whole batches through a first Linear + ReLU
layer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.datasets import load_digits
from torch import Tensor, nn

from fedleak.attacks import (
    AttackFailure,
    InterceptedUpdate,
    Reconstruction,
    TrainingHyperparams,
    execute_attack,
)
from fedleak.attacks.base import config_from_mapping
from fedleak.attacks.losses import model_gradient
from fedleak.attacks.spear import SpearAttack, SpearConfig, following_linear, relu_input_layer
from fedleak.attacks.spear_head import head_space
from fedleak.attacks.spear_head_map import always_active_map
from fedleak.attacks.spear_layers import binary_head, head_rank_note, next_layer
from fedleak.attacks.spear_solve import BatchCheck, check_batch, factorise
from fedleak.attacks.spear_state import DualData
from fedleak.simulator.models.architectures import ModelSpec, build_model
from tests.attacks.cases import (  # one_thread: a fixture, applied to the whole module
    CPU,
    NUM_CLASSES,
    one_thread,  # noqa: F401
    psnr,
    sgd_update,
    trained_photo_mlp,
)

pytestmark = pytest.mark.usefixtures("one_thread")

INPUT_SHAPE = (1, 8, 8)


def fcnn(seed: int, dtype: torch.dtype = torch.float32, **spec: object) -> nn.Module:
    model_spec = ModelSpec("fcnn", INPUT_SHAPE, NUM_CLASSES, **spec)  # type: ignore[arg-type]
    return build_model(model_spec, seed=seed).to(dtype)


def digits(seed: int, size: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` distinct handwritten digits in [0, 1] with their labels."""
    data = load_digits()
    pick = torch.randperm(len(data.images), generator=torch.Generator().manual_seed(seed))[:size]
    images = torch.tensor(data.images[pick.numpy()] / 16.0, dtype=dtype)[:, None]
    return images, torch.tensor(data.target[pick.numpy()])


def matched_psnr(truth: torch.Tensor, recon: np.ndarray) -> list[float]:
    """PSNR per true sample against the recovered sample assigned to it (order is lost)."""
    flat_t = truth.reshape(len(truth), -1).double().numpy()
    flat_r = recon.reshape(len(recon), -1).astype(np.float64)
    cost = ((flat_t[:, None] - flat_r[None]) ** 2).mean(axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return [psnr(flat_t[r], flat_r[c]) for r, c in zip(rows, cols, strict=True)]


@pytest.mark.parametrize("seed", [0, 1])
def test_every_sample_of_a_float32_batch_of_8_is_recovered(seed: int) -> None:
    model = fcnn(seed)
    x, y = digits(seed, 8, torch.float32)
    update = sgd_update(model, x, y)  # float32 model, data and update

    result = execute_attack(SpearAttack(), model, update, device=CPU, seed=0)

    assert isinstance(result, Reconstruction), result
    assert result.inputs.shape == (8, *INPUT_SHAPE) and result.inputs.dtype == np.float32
    assert min(matched_psnr(x, result.inputs)) >= 60.0
    assert result.details["layer"] == "1"
    assert result.details["reproduces"] == 1
    assert result.labels.shape == (8,) and result.labels.dtype == np.int64
    assert result.confidence is not None and result.confidence.min() >= 0.95
    assert result.iterations == 0


def test_float64_recovery_is_exact_and_reproduces_the_gradient() -> None:
    model = fcnn(2, torch.float64)
    x, y = digits(2, 8, torch.float64)

    result = SpearAttack().reconstruct(model, sgd_update(model, x, y), device=CPU, seed=0)

    assert min(matched_psnr(x, result.inputs)) >= 150.0
    assert float(result.details["gradient_residual"]) < 1e-9
    assert result.details["reproduces"] == 1
    assert int(result.details["input_starts"]) > 0  # found from the input side
    assert result.confidence is not None and result.confidence.tolist() == [1.0] * 8


def test_plain_random_submatrices_suffice_for_small_batches() -> None:
    model = fcnn(3, torch.float64)
    x, y = digits(3, 6, torch.float64)
    attack = SpearAttack(SpearConfig(guided_starts=0, input_starts=0))

    result = attack.reconstruct(model, sgd_update(model, x, y), device=CPU, seed=0)

    assert min(matched_psnr(x, result.inputs)) >= 150.0
    assert int(result.details["candidates_sampled"]) > 0


def test_deterministic_under_seed() -> None:
    model = fcnn(4, torch.float64)
    x, y = digits(4, 8, torch.float64)
    update = sgd_update(model, x, y)

    first = SpearAttack().reconstruct(model, update, device=CPU, seed=7)
    second = SpearAttack().reconstruct(model, update, device=CPU, seed=7)

    np.testing.assert_array_equal(first.inputs, second.inputs)
    assert first.details == second.details


def test_disclosed_labels_are_used() -> None:
    model = fcnn(0, torch.float64)
    x, y = digits(0, 4, torch.float64)
    update = sgd_update(model, x, y, disclosed=y.numpy())
    result = SpearAttack().reconstruct(model, update, device=CPU, seed=0)
    assert result.labels.tolist() == y.tolist()


def test_not_applicable_for_multi_step_fedavg() -> None:
    model = fcnn(0)
    x, y = digits(0, 4, torch.float32)
    update = sgd_update(model, x, y)
    update = replace(update, hyperparams=TrainingHyperparams("fedavg", 0.1, 4, 5))
    result = execute_attack(SpearAttack(), model, update, device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "not_applicable"
    assert "5 local steps" in result.reason


def test_not_applicable_when_batch_is_not_below_min_n_m() -> None:
    model = fcnn(0, width=8)  # M = 8 neurons: dL/dW of a batch of 8 is not low-rank
    x, y = digits(0, 8, torch.float32)
    result = execute_attack(SpearAttack(), model, sgd_update(model, x, y), device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "not_applicable"
    assert "min(N, M) = min(64, 8)" in result.reason


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (
            build_model(ModelSpec("fcnn", INPUT_SHAPE, NUM_CLASSES, activation="sigmoid"), seed=0),
            "followed by Sigmoid, not ReLU",
        ),
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 32, bias=False), nn.ReLU()), "without bias"),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 10)),
            "is a Conv2d",
        ),
    ],
    ids=["sigmoid", "no-bias", "conv-first"],
)
def test_not_applicable_without_a_linear_relu_input_layer(model: nn.Module, reason: str) -> None:
    x, y = digits(0, 2, torch.float32)
    result = execute_attack(SpearAttack(), model, sgd_update(model, x, y), device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "not_applicable"
    assert reason in result.reason


def test_relu_input_layer_of_fcnn_and_of_a_mismatched_input() -> None:
    model = fcnn(0)
    found = relu_input_layer(model, 64)
    assert not isinstance(found, str) and found[0] == "1"
    assert "in_features=64, not the 100-dimensional input" in str(relu_input_layer(model, 100))


def test_erroneous_duplicate_samples_leave_the_gradient_rank_deficient() -> None:
    model = fcnn(0, torch.float64)
    x, y = digits(0, 4, torch.float64)
    x[3], y[3] = x[0], y[0]  # two equal samples: dL/dW has rank 3 < B = 4
    result = execute_attack(SpearAttack(), model, sgd_update(model, x, y), device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "failed"
    assert "rank < B = 4" in result.reason


def test_erroneous_budget_too_small_is_a_recorded_failure() -> None:
    model = fcnn(0, torch.float64)
    x, y = digits(0, 8, torch.float64)
    config = SpearConfig(time_budget_s=1e-6, batch_chunk=16, guided_starts=0, input_starts=0)
    result = execute_attack(SpearAttack(config), model, sgd_update(model, x, y), device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "failed"
    assert "of 8 columns of Q in" in result.reason
    assert "the time budget ran out; raise time_budget_s" in result.reason


@pytest.mark.parametrize(
    "params",
    [
        {"sparsity_threshold": -0.1},
        {"sparsity_threshold": 1.0},
        {"batch_chunk": 8},
        {"time_budget_s": 0},
        {"guided_starts": -1},
        {"input_starts": -1},
    ],
)
def test_erroneous_config(params: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(params))):
        config_from_mapping(SpearConfig, params)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    model = fcnn(5, torch.float64)
    x, y = digits(5, 8, torch.float64)
    update = sgd_update(model, x, y)
    cuda = torch.device("cuda")
    result = SpearAttack().reconstruct(model.to(cuda), update, device=cuda, seed=0)
    assert min(matched_psnr(x, result.inputs)) >= 150.0


def _federation_mlp(rounds: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The mlp after ``rounds`` rounds of 4-client FedSGD at lr 0.5 on digits (B = 8), as
    ``fedleak run federation.batch_size=8 federation.lr=0.5 attack=spear`` trains it, and
    client 0's batch of the next round."""
    data = load_digits()
    images = torch.tensor(data.images / 16.0, dtype=torch.float32)[:, None]
    targets = torch.tensor(data.target)
    model = build_model(ModelSpec("mlp", INPUT_SHAPE, NUM_CLASSES), seed=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(rounds + 1):
        picks = [torch.randperm(len(images), generator=gen)[:8] for _ in range(4)]
        x, y = images[picks[0]], targets[picks[0]]
        if _ == rounds:
            break
        steps = [model_gradient(model, "cross_entropy", images[p], targets[p]) for p in picks]
        with torch.no_grad():
            for index, param in enumerate(model.parameters()):
                param -= 0.5 * sum(step[index] for step in steps) / len(steps)
    return model, x, y


def test_trained_mlp_with_nested_inactive_sets_is_recovered_from_confirmed_inputs() -> None:
    """Round 13 of the training run: one sample's inactive neurons are a subset of another's,
    so no zero set pins its column; the next layer's activations confirm all 8 inputs."""
    model, x, y = _federation_mlp(12)
    update = sgd_update(model, x, y)
    result = execute_attack(SpearAttack(), model, update, device=CPU, seed=13)
    assert isinstance(result, Reconstruction), result
    assert result.details["assembled"] == 1 and result.details["undetermined"] >= 1
    assert min(matched_psnr(x, result.inputs)) >= 90.0
    assert sorted(result.labels.tolist()) == sorted(y.tolist())


def _check_truth(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> BatchCheck:
    """:func:`check_batch` on the true batch of ``model``'s first layer."""
    pseudo = sgd_update(model, x, y).pseudo_gradient()
    grad = torch.cat([pseudo["1.weight"], pseudo["1.bias"][:, None]], dim=1).double()
    factors = factorise(grad, len(x), "1")
    weight, bias = model[1].weight.detach().double(), model[1].bias.detach().double()
    stacked = torch.cat([x.reshape(len(x), -1).double(), torch.ones(len(x), 1)], dim=1)
    return check_batch(factors, stacked, DualData(factors.right, weight, bias, grad))


def test_a_sample_inside_another_samples_inactive_set_is_undetermined() -> None:
    """SPEAR's uniqueness assumption: in round 13 one sample's inactive neurons are a subset of
    another's, so q_i + t q_k fits every zero and the other sample's input moves along a line;
    on a random network no sample is so nested."""
    nested = _check_truth(*_federation_mlp(12))
    assert nested.reproduces and int(nested.undetermined.sum()) == 1
    model = fcnn(2)
    x, y = digits(2, 8, torch.float32)
    assert int(_check_truth(model, x, y).undetermined.sum()) == 0


def test_erroneous_noisy_gradient_names_the_broken_assumption() -> None:
    model = fcnn(0, torch.float64)
    x, y = digits(0, 8, torch.float64)
    update = sgd_update(model, x, y)
    rng = np.random.default_rng(0)
    noisy = type(update.client_params)(
        (k, v + 1e-3 * rng.standard_normal(v.shape)) for k, v in update.client_params.items()
    )
    update = replace(update, client_params=noisy)
    attack = SpearAttack(SpearConfig(time_budget_s=1.0))
    result = execute_attack(attack, model, update, device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "failed"
    assert "the gradient is not rank B within the noise" in result.reason


@pytest.mark.slow
def test_batch_of_50_on_the_fcnn_is_exact_with_its_labels() -> None:
    """SPEAR++'s regime (Bakarsky et al., arXiv 2510.24200): random submatrices would need
    ~2^49 draws here; the input-side search takes seconds."""
    model = fcnn(1, torch.float64)
    x, y = digits(1, 50, torch.float64)
    result = SpearAttack(SpearConfig(time_budget_s=120.0)).reconstruct(
        model, sgd_update(model, x, y), device=CPU, seed=0
    )
    assert min(matched_psnr(x, result.inputs)) >= 150.0
    assert sorted(result.labels.tolist()) == sorted(y.tolist())


def test_following_linear_finds_the_layer_fed_by_the_relu() -> None:
    model = fcnn(0)
    found = following_linear(model, model[1])
    assert found is not None and found[0] == "3" and found[1].in_features == 200
    sigmoid = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Sigmoid(), nn.Linear(32, 10))
    assert following_linear(sigmoid, sigmoid[1]) is None


def test_only_a_two_output_cross_entropy_head_is_binary() -> None:
    """A two-unit hidden layer passes a rank-2 gradient back, not a multiple of one vector:
    it is a narrow next layer (k = 2), not a binary head."""
    x, y = digits(0, 4, torch.float64)
    head = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 2)).double()
    update = sgd_update(head, x, y % 2)
    assert binary_head(head, head[1], update) is not None
    assert next_layer(head, head[1], update).rank == 1  # type: ignore[union-attr]
    hidden = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 2), nn.ReLU(), nn.Linear(2, 10)
    ).double()
    update = sgd_update(hidden, x, y)
    assert binary_head(hidden, hidden[1], update) is None
    after = next_layer(hidden, hidden[1], update)
    assert after is not None and after.rank == 2 and after.describe() == "layer '3''s 2 outputs"
    assert "rank at most 2 < B = 4 (layer '3''s 2 outputs)" in head_rank_note(
        hidden, hidden[1], update, 4
    )
    mse = replace(update, hyperparams=replace(update.hyperparams, loss="mse"))
    assert binary_head(head, head[1], mse) is None


def _narrow_head_update(classes: int, seed: int) -> tuple[nn.Module, InterceptedUpdate, Tensor]:
    """8 digits through an untrained mlp whose head has ``classes`` outputs."""
    model = build_model(ModelSpec("mlp", INPUT_SHAPE, classes), seed=seed).double()
    x, y = digits(seed, 8, torch.float64)
    return model, replace(sgd_update(model, x, y % classes), num_classes=classes), x


@pytest.mark.parametrize("classes", [4, 6])
def test_mixtures_of_samples_behind_a_head_narrower_than_the_batch_are_rejected(
    classes: int,
) -> None:
    """With C <= B outputs the samples' output gradients span C - 1 < B directions, and
    mixtures of alike digits' columns are as sparse as a digit's own: they used to fill the
    batch (8 of 9 such updates wrong, 5-15 dB). Each must fit ``W2^T delta`` off its zeros."""
    for seed in range(2):
        model, update, x = _narrow_head_update(classes, seed)
        result = SpearAttack(SpearConfig(time_budget_s=5.0)).reconstruct(
            model, update, device=CPU, seed=0
        )
        assert result.details["reproduces"] == 1 and min(matched_psnr(x, result.inputs)) >= 150.0


def test_a_batch_with_mixtures_behind_a_three_output_head_says_why_it_is_wrong() -> None:
    """Without the search through the head, no column fitting it is found at B = 8 behind 3
    outputs: mixtures stand in (the batch still bounds the leak from below), and the record
    names the cause."""
    model, update, _ = _narrow_head_update(3, 0)
    result = SpearAttack(SpearConfig(time_budget_s=2.0, head_search=False)).reconstruct(
        model, update, device=CPU, seed=0
    )
    assert result.details["reproduces"] == 0 and int(result.details["mixed_columns"]) > 0
    cause = str(result.details["cause"])
    assert "some are mixtures of samples" in cause
    assert "rank at most 2 < B = 8 (the 3-output head)" in cause


@pytest.mark.parametrize("classes", [3, 4])
def test_the_search_through_a_narrow_head_recovers_the_batch_exactly(classes: int) -> None:
    """Each column is ``a_i * (H g_i)`` with ``g_i`` in the head's C - 1 directions: B + C - 2
    rows with guessed activity pin it where zeros alone cannot (the case above)."""
    for seed in range(2):
        model, update, x = _narrow_head_update(classes, seed)
        result = SpearAttack(SpearConfig(time_budget_s=20.0)).reconstruct(
            model, update, device=CPU, seed=0
        )
        assert result.details["assembled"] == 1  # the head search, not the sparse one
        assert result.details["reproduces"] == 1 and min(matched_psnr(x, result.inputs)) >= 150.0


def test_head_space_spans_every_samples_gradient_at_the_relu() -> None:
    """Behind a C-output head under cross-entropy, W2^T (p_i - y_i) lies in the C - 1 columns
    of H; behind a hidden layer H is W2^T itself."""
    model, update, x = _narrow_head_update(4, 0)
    space = head_space(model, model[1], update)
    assert space is not None and space.shape == (100, 3)
    _, y = digits(0, 8, torch.float64)
    delta = torch.softmax(model(x), 1) - nn.functional.one_hot(y.long() % 4, 4)
    at_relu = (model[3].weight.T @ delta.T).detach()  # (100, B)
    fit = torch.linalg.lstsq(space, at_relu).solution
    assert torch.allclose(space @ fit, at_relu, atol=1e-12)
    hidden = fcnn(0, torch.float64)
    inner = head_space(hidden, hidden[1], update)
    assert inner is not None and torch.equal(inner, hidden[3].weight.detach().T)


def test_an_mlp_trained_for_10_rounds_on_photos_gives_its_batch_of_8_back_exactly() -> None:
    """The case the sparse search lost (no column in 30 s): 6 classes, so the gradient at the
    ReLU has rank 5 < 8, and 37 live neurons with alike patterns. The narrow-head search
    recovers every photo and label."""
    model, update, x, y = trained_photo_mlp(8)

    result = SpearAttack().reconstruct(model, update, device=CPU, seed=0)

    assert result.details["assembled"] == 1 and result.details["reproduces"] == 1
    assert min(matched_psnr(x.double(), result.inputs)) >= 100.0
    assert sorted(result.labels.tolist()) == sorted(y.tolist())


def test_the_always_active_neurons_give_g_as_a_map_of_q() -> None:
    """Neurons active for every sample have rows ``r_j = h_j M`` of L; the RANSAC finds ``M``
    and then ``g_i = M q_i`` for every true column, and the map keeps no other row."""
    model, update, x = _narrow_head_update(4, 0)
    pseudo = update.pseudo_gradient()
    grad = torch.cat(
        [torch.as_tensor(pseudo["1.weight"]), torch.as_tensor(pseudo["1.bias"])[:, None]], 1
    )
    factors = factorise(grad.double(), 8, "1")
    rows = factors.basis[factors.live]
    space = head_space(model, model[1], update)
    assert space is not None
    head = space[factors.live]
    active = (x.reshape(8, -1) @ model[1].weight.T + model[1].bias > 0)[:, factors.live]
    always = active.all(dim=0)
    assert int(always.sum()) >= head.shape[1] + 2  # the case has enough of them

    found = always_active_map(
        rows, head, factors.tol, torch.ones_like(always), torch.Generator().manual_seed(0)
    )

    assert found is not None
    fits = (rows - head @ found).norm(dim=1) <= 10 * factors.tol
    assert torch.equal(fits, always)
    noise = torch.randn(rows.shape, generator=torch.Generator().manual_seed(1), dtype=rows.dtype)
    assert (
        always_active_map(noise, head, factors.tol, torch.ones_like(always), torch.Generator())
        is None
    )
