"""Model registry, architectures and seeded initialisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedleak.simulator.models.architectures import (
    ModelSpec,
    available_activations,
    available_inits,
    available_models,
    build_model,
    register_model,
)

ALL_MODELS = available_models()
SHAPES = [(1, 8, 8), (1, 32, 32), (3, 32, 32)]


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _equal(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(_params(a), _params(b), strict=True))


def test_registry_has_the_seed_architectures() -> None:
    assert set(ALL_MODELS) >= {"mlp", "fcnn", "lenet", "cnn", "resnet18"}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_builds_and_forwards(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(ModelSpec(name, shape, num_classes=7), seed=0).eval()
    with torch.no_grad():
        out = model(torch.rand(3, *shape))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


def test_mlp_matches_seed_000() -> None:
    model = build_model(ModelSpec("mlp", (1, 8, 8), 10), seed=0)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 100), (100, 10)]
    assert any(isinstance(m, nn.ReLU) for m in model.modules())
    vector = build_model(ModelSpec("mlp", (30,), 2, width=5), seed=0)
    assert vector(torch.rand(4, 30)).shape == (4, 2)


def test_fcnn_matches_spear() -> None:
    model = build_model(ModelSpec("fcnn", (1, 8, 8), 10), seed=0)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 6
    assert [m.out_features for m in linears] == [200] * 5 + [10]
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 5


def test_lenet_matches_dlg() -> None:
    model = build_model(ModelSpec("lenet", (3, 32, 32), 10), seed=0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (12, (5, 5), (2, 2), (2, 2)),
        (12, (5, 5), (2, 2), (2, 2)),
        (12, (5, 5), (1, 1), (2, 2)),
    ]
    assert sum(isinstance(m, nn.Sigmoid) for m in model.modules()) == 3  # DLG's default
    assert [m.in_features for m in model.modules() if isinstance(m, nn.Linear)] == [768]
    wide = build_model(ModelSpec("lenet", (1, 8, 8), 10, width=24, activation="relu"), seed=0)
    assert all(c.out_channels == 24 for c in wide.modules() if isinstance(c, nn.Conv2d))
    assert not any(isinstance(m, nn.Sigmoid) for m in wide.modules())


def test_cnn_matches_mcmahan() -> None:
    model = build_model(ModelSpec("cnn", (1, 28, 28), 10), seed=0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64 * 7 * 7, 512), (512, 10)]


def test_resnet18_adapts_channels_and_activation() -> None:
    model = build_model(ModelSpec("resnet18", (1, 32, 32), 10, activation="sigmoid"), seed=0)
    assert model.conv1.in_channels == 1  # type: ignore[union-attr]
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert any(isinstance(m, nn.Sigmoid) for m in model.modules())


@pytest.mark.parametrize("name", ALL_MODELS)
def test_seeded_builds_are_equal(name: str) -> None:
    spec = ModelSpec(name, (1, 8, 8), 10)
    torch.manual_seed(123)
    a = build_model(spec, seed=5)
    state_after = torch.get_rng_state()
    b = build_model(spec, seed=5)
    c = build_model(spec, seed=6)
    assert _equal(a, b)
    assert not _equal(a, c)
    # the caller's RNG is left alone
    assert torch.equal(torch.get_rng_state(), state_after)


@pytest.mark.parametrize("init", [i for i in available_inits() if i != "default"])
def test_init_choice_changes_weights_not_biases(init: str) -> None:
    default = build_model(ModelSpec("cnn", (1, 8, 8), 10), seed=0)
    changed = build_model(ModelSpec("cnn", (1, 8, 8), 10, init=init), seed=0)
    for (name, p), q in zip(default.named_parameters(), changed.parameters(), strict=True):
        if name.endswith("weight"):
            assert not torch.equal(p, q), name
        else:
            # biases keep torch's nonzero draw: analytic attacks divide by their gradients
            assert torch.equal(p, q), name
            assert p.abs().sum() > 0


def test_init_choices_differ_from_each_other() -> None:
    def first_weight(init: str) -> torch.Tensor:
        model = build_model(ModelSpec("mlp", (1, 8, 8), 10, init=init), seed=0)
        return next(m for m in model.modules() if isinstance(m, nn.Linear)).weight.detach()

    stds = {init: float(first_weight(init).std()) for init in available_inits()}
    assert len({round(s, 4) for s in stds.values()}) >= 3
    assert stds["kaiming_normal"] > stds["xavier_normal"]


def test_spec_is_hashable_from_a_list_shape() -> None:
    spec = ModelSpec("mlp", [1, 8, 8], 10)  # type: ignore[arg-type]
    assert spec.input_shape == (1, 8, 8)
    assert hash(spec) == hash(ModelSpec("mlp", (1, 8, 8), 10))


@pytest.mark.parametrize(
    ("spec", "what"),
    [
        (ModelSpec("vgg", (1, 8, 8), 10), "model"),
        (ModelSpec("mlp", (1, 8, 8), 10, activation="tanh"), "activation"),
        (ModelSpec("mlp", (1, 8, 8), 10, init="orthogonal"), "init"),
    ],
)
def test_erroneous_names_list_accepted_values(spec: ModelSpec, what: str) -> None:
    accepted = {
        "model": available_models(),
        "activation": available_activations(),
        "init": available_inits(),
    }[what]
    with pytest.raises(ValueError, match=f"unknown {what}") as info:
        build_model(spec)
    for name in accepted:
        assert name in str(info.value)


def test_erroneous_conv_model_on_vectors() -> None:
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build_model(ModelSpec("lenet", (64,), 10))


def test_erroneous_duplicate_registration() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("mlp", lambda spec, act: nn.Identity())
