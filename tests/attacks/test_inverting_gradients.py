"""Inverting Gradients (Geiping et al. 2020, eq. 13): it reconstructs, deterministically, on any
device,
from FedSGD gradients and from FedAvg multi-step updates."""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from fedleak.attacks import (
    AttackFailure,
    InterceptedUpdate,
    InvertingGradientsAttack,
    InvertingGradientsConfig,
    Reconstruction,
    TrainingHyperparams,
    create_attack,
    execute_attack,
)
from fedleak.attacks.fedavg import LocalSchedule, local_schedule, simulated_update
from fedleak.attacks.inverting_gradients import (
    CosineTarget,
    MatchingProblem,
    cosine_matching_loss,
    total_variation,
)
from fedleak.attacks.label_orders import label_orders
from fedleak.attacks.losses import model_gradient, observed_gradient, training_loss
from tests.attacks.cases import NUM_CLASSES, sgd_update

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; more threads crawl on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def conv_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Sigmoid(), nn.Flatten(), nn.Linear(256, NUM_CLASSES)
    )


def smooth_image(seed: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    return (0.5 + 0.4 * torch.sin(rows / 2 + seed) * torch.cos(cols / 3)).reshape(1, 1, 8, 8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(1.0 / float(np.mean((a - b) ** 2)))


@pytest.mark.parametrize("seed", range(3))
def test_reconstruction_beats_random_init_by_10_db(seed: int) -> None:
    model = conv_net(seed)
    image = smooth_image(seed)
    update = sgd_update(model, image, torch.tensor([3]))

    result = execute_attack(
        create_attack("inverting_gradients", {"iterations": 100}),
        model,
        update,
        device=CPU,
        seed=seed,
    )

    assert isinstance(result, Reconstruction)
    assert result.inputs.shape == (1, 1, 8, 8)
    assert result.inputs.min() >= 0.0 and result.inputs.max() <= 1.0
    assert result.labels.tolist() == [3]  # iDLG
    init = torch.rand((1, 1, 8, 8), generator=torch.Generator().manual_seed(seed)).numpy()
    truth = image.numpy()
    assert psnr(result.inputs, truth) >= psnr(init, truth) + 10.0
    assert result.iterations == 100
    assert result.details["restarts"] == 1
    assert float(result.details["matching_loss"]) < 1e-3


def test_deterministic_under_seed() -> None:
    model = conv_net(0)
    update = sgd_update(model, smooth_image(0), torch.tensor([1]))
    attack = InvertingGradientsAttack(InvertingGradientsConfig(iterations=10))
    first = attack.reconstruct(model, update, device=CPU, seed=7)
    second = attack.reconstruct(model, update, device=CPU, seed=7)
    other = attack.reconstruct(model, update, device=CPU, seed=8)
    np.testing.assert_array_equal(first.inputs, second.inputs)
    assert not np.array_equal(first.inputs, other.inputs)


def test_restarts_keep_the_best_match_and_count_iterations() -> None:
    model = conv_net(1)
    update = sgd_update(model, smooth_image(1), torch.tensor([5]))
    cfg = InvertingGradientsConfig(iterations=5, restarts=3, restarts_together=False)
    result = InvertingGradientsAttack(cfg).reconstruct(model, update, device=CPU, seed=0)
    single = InvertingGradientsAttack(InvertingGradientsConfig(iterations=5)).reconstruct(
        model, update, device=CPU, seed=0
    )
    assert result.iterations == 15 and result.details["restarts"] == 3
    # the first restart uses the same draw as the single run, so the best is no worse
    assert float(result.details["matching_loss"]) <= float(single.details["matching_loss"])


def test_batches_vectors_and_disclosed_labels() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, NUM_CLASSES))
    x = torch.rand(2, 12)
    update = sgd_update(model, x, torch.tensor([4, 8]), disclosed=np.array([8, 4]))
    result = execute_attack(
        create_attack("inverting_gradients", {"iterations": 5}),
        model,
        update,
        device=CPU,
        seed=0,
    )
    assert isinstance(result, Reconstruction)
    assert result.inputs.shape == (2, 12)
    assert result.labels.tolist() == [8, 4]


def test_not_applicable_for_an_all_zero_update() -> None:
    model = conv_net(0)
    update = sgd_update(model, smooth_image(0), torch.tensor([1]))
    update = InterceptedUpdate(**{**update.__dict__, "client_params": update.global_params})
    result = execute_attack(InvertingGradientsAttack(), model, update, device=CPU, seed=0)
    assert isinstance(result, AttackFailure) and result.status == "not_applicable"


@pytest.mark.parametrize(
    ("key", "value"), [("iterations", 0), ("restarts", 0), ("lr", 0.0), ("tv_weight", -1.0)]
)
def test_erroneous_config(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=key):
        create_attack("inverting_gradients", {key: value})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda() -> None:
    device = torch.device("cuda")
    model = conv_net(0)
    update = sgd_update(model, smooth_image(0), torch.tensor([2]))
    model = model.to(device)
    result = execute_attack(
        create_attack("inverting_gradients", {"iterations": 100}),
        model,
        update,
        device=device,
        seed=0,
    )
    assert isinstance(result, Reconstruction)
    assert psnr(result.inputs, smooth_image(0).numpy()) > 25.0


def test_reconstruction_reports_its_random_starting_point() -> None:
    """The auditor measures IG's gain over its initialisation from ``initial_inputs``."""
    model = conv_net(0)
    update = sgd_update(model, smooth_image(0), torch.tensor([1]))
    attack = InvertingGradientsAttack(InvertingGradientsConfig(iterations=5))
    result = attack.reconstruct(model, update, device=CPU, seed=3)
    again = attack.reconstruct(model, update, device=CPU, seed=3)
    assert result.initial_inputs is not None and again.initial_inputs is not None
    assert result.initial_inputs.shape == result.inputs.shape
    assert not np.array_equal(result.initial_inputs, result.inputs)
    np.testing.assert_array_equal(again.initial_inputs, result.initial_inputs)


# ------------------------------------------------------------ FedAvg variant (Geiping et al. 2020,
# eqs. 3-4)


def fedavg_update(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float,
    batch_size: int,
    local_steps: int,
    num_examples: int | None = None,
    disclosed: np.ndarray | None = None,
) -> InterceptedUpdate:
    """A client's K plain-SGD steps on in-order batches of ``x`` (cycling when K*B > len(x))."""
    client = copy.deepcopy(model)
    optimizer = torch.optim.SGD(client.parameters(), lr=lr)
    for k in range(local_steps):
        index = [(k * batch_size + j) % len(x) for j in range(batch_size)]
        optimizer.zero_grad()
        training_loss("cross_entropy", client(x[index]), y[index]).backward()
        optimizer.step()
    hp = TrainingHyperparams("fedavg", lr, batch_size, local_steps)
    return InterceptedUpdate(
        1,
        1,
        OrderedDict((k, v.detach().numpy().copy()) for k, v in model.state_dict().items()),
        OrderedDict((k, v.detach().numpy().copy()) for k, v in client.state_dict().items()),
        len(x) if num_examples is None else num_examples,
        hp,
        tuple(x.shape[1:]),
        NUM_CLASSES,
        disclosed,
    )


def matched_psnr(truth: np.ndarray, recon: np.ndarray) -> float:
    """Mean PSNR after pairing samples by minimum MSE (the auditor's Hungarian matching)."""
    cost = np.array([[np.mean((t - r) ** 2) for r in recon] for t in truth])
    rows, cols = linear_sum_assignment(cost)
    return float(np.mean([psnr(recon[c], truth[r]) for r, c in zip(rows, cols, strict=True)]))


@pytest.mark.parametrize("local_steps", [2, 3])
def test_fedavg_variant_beats_random_init_by_10_db(local_steps: int) -> None:
    model = conv_net(local_steps)
    x = torch.cat([smooth_image(10 * local_steps + k) for k in range(local_steps)])
    y = torch.tensor([7, 2, 4][:local_steps])  # not in class order: the restarts find the order
    update = fedavg_update(model, x, y, lr=0.05, batch_size=1, local_steps=local_steps)

    attack = create_attack(
        "inverting_gradients", {"iterations": 100, "restarts": math.factorial(local_steps)}
    )
    result = execute_attack(attack, model, update, device=CPU, seed=0)

    assert isinstance(result, Reconstruction)
    assert result.inputs.shape == (local_steps, 1, 8, 8)
    assert result.details["local_steps"] == local_steps
    assert result.details["unknowns"] == local_steps
    assert sorted(result.labels.tolist()) == sorted(y.tolist())  # from the aggregated update
    assert result.initial_inputs is not None
    truth = x.numpy()
    assert matched_psnr(truth, result.inputs) >= matched_psnr(truth, result.initial_inputs) + 10


def test_fedavg_variant_with_disclosed_labels_needs_one_restart() -> None:
    model = conv_net(0)
    x = torch.cat([smooth_image(k) for k in (1, 2, 3, 4)])
    y = torch.tensor([5, 1, 8, 1])
    update = fedavg_update(model, x, y, lr=0.05, batch_size=2, local_steps=2, disclosed=y.numpy())
    cfg = InvertingGradientsConfig(iterations=100)
    result = InvertingGradientsAttack(cfg).reconstruct(model, update, device=CPU, seed=0)
    assert result.labels.tolist() == y.tolist()  # the audit's step order is kept
    assert result.initial_inputs is not None
    truth = x.numpy()
    assert matched_psnr(truth, result.inputs) >= matched_psnr(truth, result.initial_inputs) + 10


def test_fedavg_without_simulation_treats_the_update_as_one_gradient() -> None:
    model = conv_net(1)
    x = torch.cat([smooth_image(k) for k in (1, 2, 3)])
    update = fedavg_update(model, x, torch.tensor([1, 2, 3]), lr=0.05, batch_size=1, local_steps=3)
    cfg = InvertingGradientsConfig(iterations=3, simulate_local_steps=False)
    result = InvertingGradientsAttack(cfg).reconstruct(model, update, device=CPU, seed=0)
    assert result.inputs.shape == (1, 1, 8, 8)
    assert result.details["local_steps"] == 1


def test_simulated_update_is_the_clients_weight_difference() -> None:
    """Reference test: unrolling the schedule on the true data gives the intercepted update."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, NUM_CLASSES)).double()
    x = torch.rand(5, 6, dtype=torch.float64)
    y = torch.tensor([0, 3, 3, 9, 1])
    for batch_size, steps, num_examples in [(1, 3, 5), (2, 3, 5), (2, 4, 5), (5, 1, 5)]:
        update = fedavg_update(
            model, x, y, lr=0.3, batch_size=batch_size, local_steps=steps, num_examples=num_examples
        )
        schedule = local_schedule(update)
        assert schedule.num_steps == steps
        assert schedule.num_samples == min(steps * batch_size, num_examples)
        n = schedule.num_samples
        simulated = simulated_update(model, "cross_entropy", 0.3, x[:n], y[:n], schedule)
        observed = observed_gradient(model, update)
        for sim, obs in zip(simulated, observed, strict=True):
            assert torch.allclose(sim, obs, rtol=1e-7, atol=1e-10)


def test_local_schedule_for_epochs_and_fedsgd() -> None:
    model = conv_net(0)
    update = sgd_update(model, smooth_image(0), torch.tensor([1]))
    assert local_schedule(update) == LocalSchedule(1, ((0,),))
    epochs = InterceptedUpdate(
        **{
            **update.__dict__,
            "num_examples": 5,
            "hyperparams": TrainingHyperparams("fedavg", 0.1, 2, 0, local_epochs=2),
        }
    )
    schedule = local_schedule(epochs)
    assert schedule.num_samples == 5
    assert schedule.batches == ((0, 1), (2, 3), (4,)) * 2
    assert schedule.num_slots == 10


def test_label_orders_cover_every_distinct_order_first() -> None:
    orders = label_orders(np.array([4, 1, 4]), 4, seed=0)
    assert [o.tolist() for o in orders] == [[1, 4, 4], [4, 1, 4], [4, 4, 1], [1, 4, 4]]
    many = label_orders(np.arange(6), 3, seed=0)
    assert many[0].tolist() == list(range(6)) and len(many) == 3
    assert all(sorted(o.tolist()) == list(range(6)) for o in many)


def test_closed_form_objective_gradient_equals_autograd() -> None:
    """The hand-derived dL/du fed to one VJP gives autograd's gradient of eq. 13."""
    torch.manual_seed(0)
    model = conv_net(2).double()
    update = sgd_update(model, smooth_image(2).double(), torch.tensor([6]))
    observed = observed_gradient(model, update)
    problem = MatchingProblem(
        model=model,
        loss_name="cross_entropy",
        lr=0.1,
        schedule=LocalSchedule(1, ((0,),)),
        labels=torch.tensor([6]),
        target=CosineTarget(torch.cat([o.reshape(-1) for o in observed])),
    )
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    candidate = model_gradient(model, "cross_entropy", x, torch.tensor([6]), create_graph=True)
    objective = cosine_matching_loss(candidate, observed) + 1e-2 * total_variation(x)
    (expected,) = torch.autograd.grad(objective, [x])

    got = problem.objective_gradient(x, 1e-2)

    assert torch.allclose(got, expected, rtol=1e-9, atol=1e-14)
    flat = torch.cat([c.reshape(-1) for c in candidate]).detach()
    target = torch.cat([o.reshape(-1) for o in observed])
    cosine = flat.dot(target) / (flat.norm() * target.norm())
    assert problem.matching_loss(x.detach()) == pytest.approx(float(1 - cosine), abs=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fedavg_variant_runs_on_cuda() -> None:
    device = torch.device("cuda")
    model = conv_net(2)
    x = torch.cat([smooth_image(20 + k) for k in range(2)])
    update = fedavg_update(model, x, torch.tensor([7, 2]), lr=0.05, batch_size=1, local_steps=2)
    attack = create_attack("inverting_gradients", {"iterations": 100, "restarts": 2})
    result = execute_attack(attack, model.to(device), update, device=device, seed=0)
    assert isinstance(result, Reconstruction), result
    assert result.initial_inputs is not None
    truth = x.numpy()
    assert matched_psnr(truth, result.inputs) >= matched_psnr(truth, result.initial_inputs) + 10


@pytest.mark.parametrize("seed", [0, 1])
def test_lenet_32x32_photo_at_the_defaults_beats_the_absolute_prior(seed: int) -> None:
    """One 32x32 image on DLG's sigmoid LeNet: the defaults (prior weighted relative to the
    matching term) gain >= 18 dB over the random start, >= 5 dB more than eq. 13's former
    absolute weight 1e-4 (measured 30.2-30.3 dB against 20.8-21.5 dB, start 9.8 dB): on this
    network the cosine term's input gradient is ~1e-7, so an absolute TV weight steers every
    signed step."""
    from tests.attacks.cases import cat_image, lenet
    from tests.attacks.cases import psnr as psnr_db
    from tests.attacks.cases import sgd_update as lenet_update

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, image = lenet(seed), cat_image()
        update = lenet_update(model, image, torch.tensor([3]))
        default = InvertingGradientsAttack(InvertingGradientsConfig(iterations=300))
        result = default.reconstruct(model, update, device=CPU, seed=0)
        absolute = InvertingGradientsConfig(iterations=300, tv_weight=1e-4, tv_relative=False)
        former = InvertingGradientsAttack(absolute).reconstruct(model, update, device=CPU, seed=0)
    finally:
        torch.set_num_threads(threads)
    assert result.initial_inputs is not None
    baseline = psnr_db(result.initial_inputs, image.numpy())
    reached = psnr_db(result.inputs, image.numpy())
    assert reached >= baseline + 18.0
    assert reached >= psnr_db(former.inputs, image.numpy()) + 5.0


def test_the_prior_is_off_behind_a_dense_first_layer() -> None:
    """The dense mlp's gradient fixes its input: any prior costs (98 dB without, 45 with)."""
    from fedleak.attacks.input_priors import RELATIVE_PRIOR_WEIGHT, default_prior_weight
    from fedleak.simulator.models.architectures import ModelSpec, build_model

    shape = (3, 32, 32)
    assert default_prior_weight(build_model(ModelSpec("mlp", shape, 10), seed=0), shape) == 0.0
    for name in ("lenet", "cnn"):
        model = build_model(ModelSpec(name, shape, 10), seed=0)
        assert default_prior_weight(model, shape) == RELATIVE_PRIOR_WEIGHT
