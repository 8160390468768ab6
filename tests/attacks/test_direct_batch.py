"""Direct batch inversion (Eloul et al. 2024, eq. 8): unique labels leak every sample, equal ones
mix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedleak.attacks import (
    AttackFailure,
    DirectBatchAttack,
    DirectBatchConfig,
    InterceptedUpdate,
    Reconstruction,
    create_attack,
    execute_attack,
)
from fedleak.attacks.direct_batch import dense_chain, invert_dense_batch
from fedleak.attacks.label_restoration import infer_labels
from fedleak.attacks.losses import observed_gradient
from fedleak.simulator.models.architectures import ModelSpec, build_model
from tests.attacks.cases import CPU, NUM_CLASSES, sgd_update

UNIQUE = [0, 3, 5, 9]
EQUAL = [2, 2, 2, 2]


def mlp(seed: int) -> nn.Module:
    return build_model(ModelSpec("mlp", (1, 8, 8), NUM_CLASSES), seed=seed)


def logistic_regression(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, NUM_CLASSES))


def batch(seed: int, size: int = 4) -> torch.Tensor:
    return torch.rand((size, 1, 8, 8), generator=torch.Generator().manual_seed(1000 + seed))


def relative_error(estimates: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean over samples of ``||estimate - truth|| / ||truth||`` (rows in the same order)."""
    estimates, truth = estimates.double().flatten(1), truth.double().flatten(1)
    return float(((estimates - truth).norm(dim=1) / truth.norm(dim=1)).mean())


def by_label(result: Reconstruction, labels: list[int]) -> torch.Tensor:
    """The reconstruction's row for each true label (rows sharing a label are identical)."""
    rows = [int(np.flatnonzero(result.labels == label)[0]) for label in labels]
    return torch.from_numpy(result.inputs[rows])


def mlp_feature_error(seed: int, labels: list[int], refine_steps: int = 50) -> float:
    """eq. 8 on the mlp's logit layer, against the true hidden features of the batch."""
    model = mlp(seed)
    x = batch(seed)
    update = sgd_update(model, x, torch.tensor(labels))
    grads = observed_gradient(model, update)
    inferred = torch.from_numpy(infer_labels(model, update))
    assert inferred.tolist() == sorted(labels)  # negative bias-gradient entries (Eloul et al. 2024)
    assert isinstance(model, nn.Sequential)
    hidden, last = model[:3], model[3]
    assert isinstance(last, nn.Linear)
    estimates = invert_dense_batch(
        grads[2], grads[3], inferred, weight=last.weight, bias=last.bias, refine_steps=refine_steps
    )
    with torch.no_grad():
        features = hidden(x)
    order = torch.argsort(torch.tensor(labels), stable=True)
    return relative_error(estimates, features[order])


def test_eq8_recovers_the_mlp_logit_layer_inputs_unless_labels_are_equal() -> None:
    """Acceptance: B = 4 on ``mlp``, error <= 0.1 with unique labels, >= 5x with equal ones."""
    unique = [mlp_feature_error(seed, UNIQUE) for seed in range(5)]
    equal = [mlp_feature_error(seed, EQUAL) for seed in range(5)]
    assert np.mean(unique) <= 0.1
    assert np.mean(equal) >= 5 * np.mean(unique)
    assert min(equal) > 0.1  # the equal-label estimate is the batch mean (fig. 1's red)


def test_eq8_as_printed_shows_the_trend_with_a_bias_the_refinement_removes() -> None:
    # with C = 10 the neglected p_{j != c} terms leave ~(B-1)/C of mixing (Eloul et al. 2024, fig.
    # 1a)
    printed_unique = np.mean([mlp_feature_error(s, UNIQUE, refine_steps=0) for s in range(5)])
    printed_equal = np.mean([mlp_feature_error(s, EQUAL, refine_steps=0) for s in range(5)])
    refined_unique = np.mean([mlp_feature_error(s, UNIQUE) for s in range(5)])
    assert refined_unique < 0.01 < printed_unique < printed_equal


def test_attack_recovers_mlp_inputs_through_the_hidden_layer() -> None:
    """Acceptance through the attack: the client's data, not just features, on ``mlp``."""
    errors: dict[str, list[float]] = {"unique": [], "equal": []}
    for seed in range(5):
        for kind, labels in (("unique", UNIQUE), ("equal", EQUAL)):
            model = mlp(seed)
            x = batch(seed)
            update = sgd_update(model, x, torch.tensor(labels))
            result = execute_attack(
                create_attack("direct_batch"), model, update, device=CPU, seed=0
            )
            assert isinstance(result, Reconstruction), result
            assert result.inputs.shape == (4, 1, 8, 8)
            assert result.labels.tolist() == sorted(labels)
            assert result.details["recovered"] == "input"
            assert result.details["dense_layers"] == 2
            errors[kind].append(relative_error(by_label(result, labels), x))
    assert np.mean(errors["unique"]) <= 0.1
    assert np.mean(errors["equal"]) >= 5 * np.mean(errors["unique"])


def test_logistic_regression_recovers_the_images() -> None:
    model = logistic_regression(0)
    x = batch(0)
    result = DirectBatchAttack().reconstruct(
        model, sgd_update(model, x, torch.tensor(UNIQUE)), device=CPU, seed=0
    )
    assert relative_error(by_label(result, UNIQUE), x) < 1e-3
    np.testing.assert_array_equal(result.confidence, np.ones(4))
    assert result.details["dense_layers"] == 1
    assert float(result.details["residual"]) < 1e-4


def test_equal_labels_return_one_mixed_estimate_per_sample() -> None:
    model = logistic_regression(1)
    x = batch(1)
    result = DirectBatchAttack().reconstruct(
        model, sgd_update(model, x, torch.tensor([1, 1, 4, 4])), device=CPU, seed=0
    )
    assert result.labels.tolist() == [1, 1, 4, 4]
    np.testing.assert_array_equal(result.inputs[0], result.inputs[1])
    np.testing.assert_array_equal(result.confidence, np.full(4, 0.5))
    # each estimate is (close to) the mean of its class's two inputs
    pair_mean = x[:2].mean(dim=0, keepdim=True)
    assert relative_error(torch.from_numpy(result.inputs[:1]), pair_mean) < 0.05


def test_single_sample_is_exact_and_deeper_chains_work() -> None:
    fcnn = build_model(ModelSpec("fcnn", (1, 8, 8), NUM_CLASSES, width=32), seed=0).double()
    for model in (mlp(0).double(), fcnn):
        for labels in ([6], UNIQUE):
            x = batch(2, len(labels)).double()
            result = DirectBatchAttack().reconstruct(
                model, sgd_update(model, x, torch.tensor(labels)), device=CPU, seed=0
            )
            assert relative_error(by_label(result, labels), x) < 1e-6


def test_disclosed_labels_are_used_in_their_order() -> None:
    model = mlp(0)
    x = batch(0)
    update = sgd_update(model, x, torch.tensor(UNIQUE), disclosed=np.array([9, 0, 5, 3]))
    result = DirectBatchAttack().reconstruct(model, update, device=CPU, seed=0)
    assert result.labels.tolist() == [9, 0, 5, 3]
    assert relative_error(torch.from_numpy(result.inputs), x[[3, 0, 2, 1]]) < 0.1


def test_closed_form_ignores_the_seed() -> None:
    model = mlp(0)
    update = sgd_update(model, batch(0), torch.tensor(UNIQUE))
    first = DirectBatchAttack().reconstruct(model, update, device=CPU, seed=1)
    second = DirectBatchAttack().reconstruct(model, update, device=CPU, seed=2)
    np.testing.assert_array_equal(first.inputs, second.inputs)
    assert first.initial_inputs is None


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (
            nn.Sequential(
                nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 10)
            ),
            "breaks the chain",
        ),
        (nn.Sequential(nn.Linear(64, NUM_CLASSES, bias=False)), "with bias"),
        (nn.Sequential(nn.Linear(64, NUM_CLASSES), nn.ReLU()), "does not produce the logits"),
    ],
)
def test_not_applicable_outside_dense_chains(model: nn.Module, reason: str) -> None:
    update = sgd_update(model, batch(0, 2).flatten(1), torch.tensor([1, 2]))
    result = execute_attack(DirectBatchAttack(), model, update, device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "not_applicable"
    assert reason in result.reason


def test_not_applicable_when_the_first_layer_does_not_take_the_input() -> None:
    model = mlp(0)
    update = sgd_update(model, batch(0), torch.tensor(UNIQUE))
    update = InterceptedUpdate(**{**update.__dict__, "input_shape": (2, 8, 8)})
    reason = DirectBatchAttack().not_applicable_reason(model, update)
    assert reason is not None and "in_features=64" in reason
    assert isinstance(dense_chain(model), list)
    assert "Module" in str(dense_chain(nn.Module()))


def test_erroneous_config() -> None:
    with pytest.raises(ValueError, match="refine_steps"):
        create_attack("direct_batch", {"refine_steps": -1})
    with pytest.raises(ValueError, match="tolerance"):
        DirectBatchConfig(tolerance=-1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda() -> None:
    device = torch.device("cuda")
    model = mlp(0)
    x = batch(0)
    update = sgd_update(model, x, torch.tensor(UNIQUE))
    result = execute_attack(
        create_attack("direct_batch"), model.to(device), update, device=device, seed=0
    )
    assert isinstance(result, Reconstruction), result
    assert relative_error(by_label(result, UNIQUE), x) < 0.1
