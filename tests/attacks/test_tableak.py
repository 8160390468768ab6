"""TabLeak: relaxation, pooling, applicability, and a reconstruction that recovers categories."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from fedleak.attacks import InputDomain, TabLeakConfig, create_attack, execute_attack
from fedleak.attacks.input_priors import initial_inputs, input_prior, project_, total_variation_1d
from fedleak.attacks.tableak import align_to, pool_ensemble, relaxed_rows
from fedleak.attacks.types import AttackFailure, InterceptedUpdate, Reconstruction
from fedleak.simulator.models.architectures import ModelSpec, build_model
from tests.attacks.cases import one_thread, sgd_update  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

DOMAIN = InputDomain("tabular", None, None, ((0, 3), (4, 6)))
"""Row layout: a 3-category block, one continuous column, a 2-category block, one more."""


def test_relaxed_rows_put_each_block_on_the_simplex() -> None:
    free = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    rows = relaxed_rows(free, DOMAIN, temperature=1.0)
    torch.testing.assert_close(rows[:, 0:3].sum(1), torch.ones(5))
    torch.testing.assert_close(rows[:, 4:6].sum(1), torch.ones(5))
    torch.testing.assert_close(rows[:, [3, 6]], free[:, [3, 6]])


def test_pooling_votes_per_block_and_takes_the_median() -> None:
    base = np.array([[1.0, 0, 0, 0.5, 0, 1, 2.0]])
    other = np.array([[0.0, 1, 0, 0.7, 0, 1, 4.0]])
    third = np.array([[0.9, 0, 0.1, 0.1, 1, 0, 3.0]])
    pooled, confidence = pool_ensemble([base, other, third], DOMAIN)
    np.testing.assert_allclose(pooled, [[1, 0, 0, 0.5, 0, 1, 3.0]])
    assert 0.0 < confidence[0] < 1.0
    unanimous, sure = pool_ensemble([base, base, base], DOMAIN)
    np.testing.assert_allclose(unanimous, base)
    assert sure[0] == pytest.approx(1.0)


def test_align_to_undoes_a_permutation() -> None:
    rows = np.random.default_rng(0).normal(size=(6, 7))
    np.testing.assert_array_equal(align_to(rows, rows[[3, 1, 5, 0, 2, 4]]), rows)


def test_not_applicable_to_images() -> None:
    model = build_model(ModelSpec("mlp", (12,), 10), seed=0)
    update = sgd_update(model, torch.rand(2, 12), torch.tensor([1, 2]))
    outcome = execute_attack(
        create_attack("tableak"), model, update, device=torch.device("cpu"), seed=0
    )
    assert isinstance(outcome, AttackFailure) and outcome.status == "not_applicable"
    assert "tabular" in outcome.reason


def test_erroneous_config() -> None:
    with pytest.raises(ValueError, match="restarts"):
        TabLeakConfig(restarts=0)
    with pytest.raises(ValueError, match="temperature"):
        TabLeakConfig(temperature=0.0)


def test_recovers_the_categories_of_a_small_batch() -> None:
    rng = np.random.default_rng(0)
    rows = np.zeros((2, 7), dtype=np.float32)
    for i, (a, b) in enumerate([(0, 4), (2, 5)]):
        rows[i, a] = rows[i, b] = 1.0
    rows[:, [3, 6]] = rng.normal(size=(2, 2))
    model = build_model(ModelSpec("mlp", (7,), 10, width=50), seed=0)
    update = sgd_update(model, torch.from_numpy(rows), torch.tensor([1, 2]))
    update = replace(update, input_domain=DOMAIN)
    attack = create_attack("tableak", {"iterations": 150, "restarts": 3, "lr": 0.1})
    outcome = execute_attack(attack, model, update, device=torch.device("cpu"), seed=0)
    assert isinstance(outcome, Reconstruction), outcome
    found = outcome.inputs
    # pooled rows are exactly one-hot in every block
    assert set(np.unique(found[:, [0, 1, 2, 4, 5]])) <= {0.0, 1.0}
    order = [int(np.argmin(((found - r) ** 2).sum(1))) for r in rows]
    assert sorted(order) == [0, 1]
    np.testing.assert_array_equal(found[order][:, [0, 1, 2, 4, 5]], rows[:, [0, 1, 2, 4, 5]])
    assert outcome.confidence is not None and outcome.confidence.shape == (2,)


def _table_update() -> tuple[torch.nn.Module, InterceptedUpdate]:
    rows = np.zeros((3, 7))
    for i, (a, b) in enumerate([(0, 4), (2, 5), (1, 4)]):
        rows[i, a] = rows[i, b] = 1.0
    rows[:, [3, 6]] = np.random.default_rng(1).normal(size=(3, 2))
    model = build_model(ModelSpec("mlp", (7,), 10, width=50), seed=1).double()
    update = sgd_update(model, torch.from_numpy(rows), torch.tensor([1, 2, 7]))
    return model, replace(update, input_domain=DOMAIN)


def test_restarts_together_reconstruct_what_they_do_one_after_another() -> None:
    """The vectorised pass is the same computation: same starts, steps, choice and pooling."""
    model, update = _table_update()
    settings = {"iterations": 60, "restarts": 4, "lr": 0.1}
    outcomes = {
        together: execute_attack(
            create_attack("tableak", {**settings, "restarts_together": together}),
            model,
            update,
            device=torch.device("cpu"),
            seed=3,
        )
        for together in (True, False)
    }
    both, apart = outcomes[True], outcomes[False]
    assert isinstance(both, Reconstruction) and isinstance(apart, Reconstruction)
    assert both.details["restarts_together"] and not apart.details["restarts_together"]
    np.testing.assert_allclose(both.inputs, apart.inputs, atol=1e-6)
    assert both.confidence is not None and apart.confidence is not None
    np.testing.assert_allclose(both.confidence, apart.confidence)
    assert both.details["matching_loss"] == pytest.approx(apart.details["matching_loss"], rel=1e-6)


def test_restarts_run_together_by_default_on_a_small_table_model() -> None:
    model, update = _table_update()
    attack = create_attack("tableak", {"iterations": 5, "restarts": 2})
    outcome = execute_attack(attack, model, update, device=torch.device("cpu"), seed=0)
    assert isinstance(outcome, Reconstruction) and outcome.details["restarts_together"]
    single = create_attack("tableak", {"iterations": 5, "restarts": 1})
    outcome = execute_attack(single, model, update, device=torch.device("cpu"), seed=0)
    assert isinstance(outcome, Reconstruction) and not outcome.details["restarts_together"]


def test_priors_follow_the_modality() -> None:
    image, signal, table = InputDomain(), InputDomain("signal", None, None), DOMAIN
    assert input_prior(image, (1, 8, 8)) is not None and input_prior(image, (64,)) is None
    assert input_prior(signal, (150,)) is total_variation_1d
    assert input_prior(table, (7,)) is None
    with pytest.raises(ValueError, match="unknown modality"):
        input_prior(InputDomain("audio", None, None), (5,))
    gen = torch.Generator().manual_seed(0)
    start = initial_inputs((100, 7), table, gen, torch.float32)
    assert start.min() < 0 and start.max() > 1  # standardised, not a pixel box
    pixels = initial_inputs((100, 7), image, torch.Generator().manual_seed(0), torch.float32)
    torch.testing.assert_close(
        pixels, torch.rand((100, 7), generator=torch.Generator().manual_seed(0))
    )
    assert project_(start.clone(), table).equal(start)
    assert project_(start.clone(), image).max() <= 1.0
    smooth = torch.linspace(0, 1, 100)
    assert total_variation_1d(smooth) < total_variation_1d(torch.rand(100))


def test_dlg_smoothness_prior_follows_the_modality() -> None:
    from fedleak.attacks.dlg import gradient_matching_objective

    model = build_model(ModelSpec("mlp", (12,), 10), seed=0)
    x = torch.rand(1, 12)
    signal = replace(
        sgd_update(model, x, torch.tensor([3])), input_domain=InputDomain("signal", None, None)
    )
    table = replace(signal, input_domain=InputDomain("tabular", None, None, ((0, 4),)))
    probe = torch.rand(1, 12)
    base = gradient_matching_objective(model, signal, probe, lambda: torch.tensor([3]))()
    smooth = gradient_matching_objective(
        model, signal, probe, lambda: torch.tensor([3]), tv_weight=0.5
    )()
    flat = gradient_matching_objective(
        model, table, probe, lambda: torch.tensor([3]), tv_weight=0.5
    )()
    torch.testing.assert_close(smooth - base, 0.5 * total_variation_1d(probe))
    torch.testing.assert_close(flat, base)  # no prior on a table
