"""Bad configs stop before anything starts, naming the key and the accepted values."""

from __future__ import annotations

import pytest

from fedleak.attacks import Attack, register_attack, registry
from fedleak.attacks.types import Disclosure, Reconstruction
from fedleak.simulator.cli import main
from fedleak.simulator.config.compose import load_experiment
from fedleak.simulator.config.schema import ConfigError, ExperimentConfig
from fedleak.simulator.exit_codes import CONFIG_ERROR


class _NeedsLabels(Attack):
    name = "test_needs_labels"
    requires = frozenset({Disclosure.LABELS})

    def reconstruct(self, model, update, *, device, seed) -> Reconstruction:  # type: ignore[no-untyped-def]
        raise NotImplementedError


@pytest.fixture(autouse=True)
def _needs_labels_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """This module's tests see an attack that needs the labels; no other test module does."""
    monkeypatch.setattr(registry, "ATTACKS", registry.ATTACKS.copy())
    register_attack(_NeedsLabels.name, _NeedsLabels)


def test_default_config_is_the_embedded_default() -> None:
    cfg = load_experiment()
    assert cfg.dataset.name == "digits" and cfg.model.name == "mlp"
    assert cfg.model.init == "kaiming_uniform"
    assert cfg.federation.num_clients == 32 and cfg.federation.rounds == 40
    assert cfg.federation.mode == "fedsgd" and cfg.federation.batch_size == 1
    assert cfg.federation.lr == 0.3
    assert cfg.attack.names == ["analytic"] and cfg.attack.rounds is None


def test_overrides_reach_the_typed_config() -> None:
    cfg = load_experiment(
        ["model=lenet", "federation.rounds=5", "federation.lr=0.5", "pool=inprocess"]
    )
    assert isinstance(cfg, ExperimentConfig)
    assert (cfg.model.name, cfg.federation.rounds, cfg.federation.lr, cfg.pool.backend) == (
        "lenet",
        5,
        0.5,
        "inprocess",
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model=transformer"], ["model", "'transformer'", "mlp", "lenet"]),
        (["federation.rounds=abc"], ["federation.rounds", "expected int"]),
        (["federation.rounds=0"], ["federation.rounds", "> 0"]),
        (["federation.mode=fedprox"], ["federation.mode", "fedavg", "fedsgd"]),
        (["federation.colour=red"], ["federation.colour", "unknown key"]),
        (["attack.names=[analytic,dlg2]"], ["attack.names", "'dlg2'", "inverting_gradients"]),
        (["federation.fraction_train=1.5"], ["federation.fraction_train", "(0, 1]"]),
        (["model.activation=tanh"], ["model.activation", "relu", "sigmoid"]),
        (["pool.backend=dask"], ["pool.backend", "inprocess", "ray"]),
        (
            ["+attack.params.inverting_gradients.momentum=0.9"],
            ["attack.params.inverting_gradients", "momentum"],
        ),
        (
            ["attack.names=[test_needs_labels]"],
            ["test_needs_labels", "requires", "labels", "attack.disclose"],
        ),
        (["dataset=imagenet"], ["dataset", "'imagenet'", "digits"]),
        (["defense=dpsgd"], ["defense", "'dpsgd'", "dp", "prune", "secagg"]),
        (["defense.prune.fraction=1.0"], ["defense.prune.fraction", "[0, 1)"]),
        (["defense.dp.delta=0"], ["defense.dp.delta", "(0, 1)"]),
        (["defense.quantize.bits=0"], ["defense.quantize.bits", "[1, 32]"]),
        (
            ["defense=secagg", "federation.num_clients=4", "defense.secagg.num_shares=5"],
            ["num_shares", "clients per round = 4"],
        ),
        (["federation.batch_labels=sorted"], ["federation.batch_labels", "equal", "random"]),
        (["attack.effort=max"], ["attack.effort", "'max'", "fast", "thorough"]),
        (["attack.fallback=[dlg3]"], ["attack.fallback", "'dlg3'", "inverting_gradients"]),
        (
            ["attack.fallback=[test_needs_labels]"],
            ["attack.fallback", "test_needs_labels", "requires", "labels"],
        ),
    ],
)
def test_erroneous_config_names_the_key(overrides: list[str], expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_experiment(overrides)
    for fragment in expected:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_erroneous_config_collects_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        load_experiment(["federation.rounds=0", "federation.batch_size=-1", "device=tpu"])
    assert len(info.value.problems) == 3


def test_disclosing_labels_admits_the_attack() -> None:
    cfg = load_experiment(["attack.names=[test_needs_labels]", "attack.disclose=[labels]"])
    assert cfg.attack.disclose == ["labels"]


def test_erroneous_config_exits_nonzero_before_running(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "federation.rounds=0", f"output_dir={tmp_path}"])
    assert code == CONFIG_ERROR
    err = capsys.readouterr().err
    assert "federation.rounds" in err and "must be > 0" in err
    assert not any(tmp_path.iterdir())  # type: ignore[attr-defined]  # nothing was started


def test_defenses_combine_and_mixing_options_set_the_recipe() -> None:
    cfg = load_experiment(["defense=[prune,dp,mse_loss,equal_labels]", "defense.dp.noise=0.5"])
    assert cfg.defense.active() == ["prune", "dp"]
    assert cfg.defense.dp.noise == 0.5
    assert cfg.federation.loss == "mse" and cfg.federation.batch_labels == "equal"
    plain = load_experiment(["defense=none", "defense.dp.noise=0.5"])
    assert plain.defense.active() == [] and plain.federation.loss == "cross_entropy"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("federation.round=2", "federation.round: unknown key; did you mean 'federation.rounds'?"),
        ("+federation.round=2", "federation.round: unknown key; did you mean 'federation.rounds'?"),
        ("nme=x", "nme: unknown key; did you mean 'name'? accepted keys at the top level"),
        ("defense.dp.nosie=1", "did you mean 'defense.dp.noise'? accepted keys of defense.dp"),
        ("federaton.rounds=3", "did you mean 'federation.rounds'? accepted keys at the top"),
        ("federation.xyzzy=1", "federation.xyzzy: unknown key; accepted keys of federation: ["),
    ],
)
def test_erroneous_key_gets_a_did_you_mean_not_plus_advice(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_experiment([override])
    (problem,) = error.value.problems
    assert problem.startswith(message) or message in problem, problem
    assert "'+" not in problem  # Hydra's advice to add the key would fail too


def test_new_attack_settings_keep_the_plus_advice() -> None:
    with pytest.raises(ConfigError) as error:
        load_experiment(["attack.params.inverting_gradients.lr=0.2"])
    assert "'+attack.params.inverting_gradients.lr=...'" in error.value.problems[0]
    cfg = load_experiment(["+attack.params.inverting_gradients.lr=0.2"])
    assert cfg.attack.params["inverting_gradients"]["lr"] == 0.2


def test_closed_fields_are_literal_types_whose_values_are_the_accepted_ones() -> None:
    import typing

    from fedleak.simulator.config import choices
    from fedleak.simulator.config.schema import (
        FederationConfig,
        PoolConfig,
        experiment_from_mapping,
    )

    closed = {
        (FederationConfig, "mode"): choices.MODES,
        (FederationConfig, "loss"): choices.LOSSES,
        (FederationConfig, "batch_labels"): choices.BATCH_LABELS,
        (PoolConfig, "when_full"): choices.QUEUE_POLICIES,
        (ExperimentConfig, "device"): choices.DEVICES,
    }
    for (schema, name), accepted in closed.items():
        hint = typing.get_type_hints(schema)[name]
        assert typing.get_origin(hint) is typing.Literal and typing.get_args(hint) == accepted
    with pytest.raises(ConfigError, match=r"federation.mode: 'sgd' is not one of \['fedavg'"):
        experiment_from_mapping({"federation": {"mode": "sgd"}})


@pytest.mark.parametrize(
    ("model", "names"),
    [
        ("mlp", ["analytic"]),  # the exact attack fits: no fallback, no notice
        ("lenet", ["analytic", "inverting_gradients"]),  # a convolution first: the fallback runs
        ("resnet18", ["analytic", "inverting_gradients"]),
    ],
)
def test_default_attacks_measure_every_model(model: str, names: list[str]) -> None:
    from fedleak.simulator.runtime.experiment_data import (
        attack_names,
        experiment_spec,
        experiment_splits,
    )

    cfg = load_experiment([f"model={model}", "federation.batch_size=2"])
    resolved, notice = attack_names(cfg, experiment_spec(cfg, experiment_splits(cfg)))
    assert resolved == names
    assert (notice is None) == (names == ["analytic"])
    if notice:
        assert "not the model's first layer" in notice and "attack.fallback=[]" in notice
    off = load_experiment([f"model={model}", "attack.fallback=[]"])
    assert attack_names(off, experiment_spec(off, experiment_splits(off)))[0] == ["analytic"]
