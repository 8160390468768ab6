"""Registry rules, the never-raising runner, and the attacker's information boundary."""

from __future__ import annotations

import ast
import inspect
import sys
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fedleak import attacks
from fedleak.attacks import (
    AnalyticAttack,
    Attack,
    AttackFailure,
    InterceptedUpdate,
    Reconstruction,
    TrainingHyperparams,
    available_attacks,
    create_attack,
    execute_attack,
    register_attack,
)
from fedleak.attacks import registry as registry_module
from fedleak.attacks.losses import model_gradient
from fedleak.attacks.types import InputDomain

CPU = torch.device("cpu")


class _Boom(Attack):
    name = "boom"

    def reconstruct(
        self, model: nn.Module, update: InterceptedUpdate, *, device: torch.device, seed: int
    ) -> Reconstruction:
        raise RuntimeError("exploded")


def tiny_update() -> tuple[nn.Module, InterceptedUpdate]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    x = torch.rand(1, 6, dtype=torch.float64)
    y = torch.tensor([1])
    names = [n for n, _ in model.named_parameters()]
    grads = dict(zip(names, model_gradient(model, "cross_entropy", x, y), strict=True))
    glob = OrderedDict((k, v.detach().numpy().copy()) for k, v in model.state_dict().items())
    client = OrderedDict((k, v - 0.1 * grads[k].detach().numpy()) for k, v in glob.items())
    hp = TrainingHyperparams("fedsgd", 0.1, 1, 1)
    return model, InterceptedUpdate(1, 3, glob, client, 1, hp, (6,), 3)


def test_package_registers_its_attacks() -> None:
    assert {"analytic", "inverting_gradients"} <= set(available_attacks())
    assert isinstance(create_attack("analytic"), AnalyticAttack)


def test_erroneous_duplicate_registration() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_attack("analytic", AnalyticAttack)


def test_registering_a_new_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "ATTACKS", registry_module.ATTACKS.copy())
    register_attack("boom", _Boom)
    assert "boom" in available_attacks()


def test_erroneous_unknown_attack_lists_available() -> None:
    with pytest.raises(ValueError, match="unknown attack 'nope'") as info:
        create_attack("nope")
    for name in available_attacks():
        assert name in str(info.value)


def test_erroneous_unknown_config_key_is_named() -> None:
    with pytest.raises(ValueError, match="topk") as info:
        create_attack("analytic", {"topk": 2})
    assert "top_k" in str(info.value)  # the accepted keys are listed


def test_every_setting_of_the_wrong_type_is_named_with_its_type() -> None:
    with pytest.raises(ValueError) as info:
        create_attack(
            "inverting_gradients",
            {"iterations": 2.5, "signed_gradients": "yes", "restarts": True, "lr": 0.5},
        )
    message = str(info.value)
    assert "iterations must be int, got 2.5" in message
    assert "signed_gradients must be bool, got 'yes'" in message
    assert "restarts must be int, got True" in message  # a bool is no count
    assert "lr" not in message  # right settings are not named
    config = create_attack("inverting_gradients", {"lr": 1, "tv_weight": None}).config
    assert config.lr == 1 and config.tv_weight is None  # an int is a float; null is allowed


def test_execute_attack_turns_exceptions_into_failures() -> None:
    model, update = tiny_update()
    result = execute_attack(_Boom(), model, update, device=CPU, seed=0)
    assert isinstance(result, AttackFailure)
    assert result.status == "failed"
    assert result.reason == "RuntimeError: exploded"
    assert result.wall_time_s >= 0.0


TINY_DOMAINS = {"tableak": InputDomain("tabular", None, None, ((0, 3),))}
"""Inputs an attack is made for, where that is not an image (TabLeak reconstructs rows)."""


@pytest.mark.parametrize("name", available_attacks())
def test_every_registered_attack_runs_on_a_tiny_case(name: str) -> None:
    model, update = tiny_update()
    update = replace(update, input_domain=TINY_DOMAINS.get(name, update.input_domain))
    result = execute_attack(create_attack(name), model, update, device=CPU, seed=0)
    assert isinstance(result, Reconstruction), result
    assert result.inputs.shape == (1, 6)
    assert result.labels.shape == (1,) and result.labels.dtype == np.int64
    assert result.wall_time_s > 0.0


def _builtin_attacks() -> list[str]:
    """fedleak's own attacks (other test modules register spies with looser signatures)."""
    return [
        n
        for n in available_attacks()
        if registry_module.attack_class(n).__module__.startswith("fedleak.attacks.")
    ]


def test_attacks_receive_only_the_intercepted_update() -> None:
    params = list(inspect.signature(Attack.reconstruct).parameters)
    assert params == ["self", "model", "update", "device", "seed"]
    assert {"analytic", "inverting_gradients"} <= set(_builtin_attacks())
    for name in _builtin_attacks():
        cls = registry_module.attack_class(name)
        assert list(inspect.signature(cls.reconstruct).parameters) == params


def test_attacks_package_imports_only_torch_numpy_scipy_stdlib() -> None:
    allowed = {"torch", "numpy", "scipy", "__future__"} | set(sys.stdlib_module_names)
    package = Path(attacks.__file__).parent
    sources = sorted(package.rglob("*.py"))
    assert sources
    for source in sources:
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{source.name}: relative import"
                modules = [node.module or ""]
            else:
                continue
            for module in modules:  # of fedleak's own packages, only fedleak.attacks itself
                own = module == "fedleak.attacks" or module.startswith("fedleak.attacks.")
                assert own or module.split(".")[0] in allowed, f"{source.name} imports {module!r}"


def test_effort_scales_an_optimisation_budget_and_is_validated() -> None:
    from fedleak.attacks.dlg import DLGConfig

    assert [DLGConfig(iterations=8, effort=e).scaled_count(8) for e in ("fast", "default")] == [
        2,
        8,
    ]
    assert DLGConfig(effort="thorough").scaled_count(300) == 1200
    with pytest.raises(ValueError, match="effort must be one of"):
        create_attack("dlg", {"effort": "extreme"})


@pytest.mark.parametrize("effort", ["fast", "default"])
def test_dlg_runs_the_iterations_its_effort_gives(effort: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2))
    before = OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items())
    x, y = torch.rand(1, 1, 2, 2), torch.tensor([1])
    grads = model_gradient(model, "cross_entropy", x, y)
    after = OrderedDict(
        (k, (before[k] - 0.1 * g).numpy()) for k, g in zip(before, grads, strict=True)
    )
    update = InterceptedUpdate(
        1,
        1,
        {k: v.numpy() for k, v in before.items()},
        after,
        1,
        TrainingHyperparams("fedsgd", 0.1, 1, 1),
        (1, 2, 2),
        2,
    )
    attack = create_attack("dlg", {"iterations": 8, "effort": effort})
    out = execute_attack(attack, model, update, device=CPU, seed=0)
    assert isinstance(out, Reconstruction)
    assert out.iterations <= {"fast": 2, "default": 8}[effort]
    assert out.iterations >= 1


def test_fallback_joins_only_when_no_attack_fits_the_architecture() -> None:
    from fedleak.attacks.registry import resolve_attack_names

    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    dense = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    names, notice = resolve_attack_names(["analytic"], ["dlg"], lambda: conv, (1, 4, 4), 2)
    assert names == ["analytic", "dlg"] and notice is not None and "analytic:" in notice
    assert resolve_attack_names(["analytic"], ["dlg"], lambda: dense, (1, 4, 4), 2) == (
        ["analytic"],
        None,
    )
    both = resolve_attack_names(["analytic", "idlg"], ["dlg"], lambda: conv, (1, 4, 4), 2)
    assert both == (["analytic", "idlg"], None)  # idlg fits any architecture
    assert resolve_attack_names([], ["dlg"], lambda: conv, (1, 4, 4), 2) == ([], None)
