"""Your own model, data set and defense: by import path (Hydra's ``_target_``), by entry point."""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from fedleak.attacks.name_table import Registry
from fedleak.clients.app import app as client_app
from fedleak.server.federation import run_federation
from fedleak.simulator import plugins
from fedleak.simulator.config.compose import load_experiment
from fedleak.simulator.config.schema import ConfigError
from fedleak.simulator.data.datasets import load_dataset
from fedleak.simulator.defenses import available_defenses, create_defense, register_defense
from fedleak.simulator.models.architectures import ModelSpec, build_model
from fedleak.simulator.runtime.experiment_data import experiment_spec, experiment_splits
from fedleak.simulator.runtime.results import RunPaths, read_leakage
from fedleak.simulator.runtime.rundir import create_run_dir
from tests.flower_harness import LocalGrid
from tests.simulator import own_components

OWN = "tests.simulator.own_components"

if "test_sign_flip" not in available_defenses():
    register_defense("test_sign_flip", own_components.sign_flip)


def test_import_object_takes_dots_and_colons() -> None:
    assert plugins.import_object(f"{OWN}.TinyNet") is own_components.TinyNet
    assert plugins.import_object(f"{OWN}:TinyNet") is own_components.TinyNet


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("no_such_pkg.Net", "cannot import 'no_such_pkg'"),
        (f"{OWN}.Missing", "has no attribute 'Missing'"),
        ("Net", "is not an import path"),
    ],
)
def test_erroneous_import_path_names_the_problem(path: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        plugins.import_object(path)


def test_call_with_offers_only_what_the_function_takes() -> None:
    def f(a: int, b: int = 0) -> tuple[int, int]:
        return a, b

    assert plugins.call_with(f, {"a": 1}, {"b": 2, "c": 3}) == (1, 2)
    assert plugins.call_with(f, {"a": 1, "b": 5}, {"b": 2}) == (1, 5)  # args win
    assert plugins.call_with(lambda **kw: kw, {}, {"c": 3}) == {"c": 3}


def test_model_by_import_path_gets_its_args_and_the_data_shape() -> None:
    spec = ModelSpec(f"{OWN}.TinyNet", (1, 4, 4), num_classes=3, args={"hidden": 5})
    model = build_model(spec, seed=1)
    assert isinstance(model, own_components.TinyNet)
    assert model[1].weight.shape == (5, 16) and model[3].weight.shape == (3, 5)
    again = build_model(dataclasses.replace(spec), seed=1)
    assert torch.equal(model[1].weight, again[1].weight)  # seeded like fedleak's own
    assert hash(spec) == hash(dataclasses.replace(spec, args={"hidden": 5}))


def test_model_that_is_not_a_module_is_refused() -> None:
    with pytest.raises(ValueError, match=r"not a torch\.nn\.Module"):
        build_model(ModelSpec(f"{OWN}.not_a_module", (1, 2, 2), num_classes=2))


def test_loader_returning_arrays_is_split_stratified_and_seeded(tmp_path: Path) -> None:
    splits = load_dataset(
        f"{OWN}.blobs", data_dir=tmp_path, seed=3, test_fraction=0.25, args={"n": 60}
    )
    assert own_components.CALLS[-1] == {"n": 60, "seed": 3, "size": 6}
    assert len(splits.train) == 45 and len(splits.test) == 15
    assert splits.train.input_shape == (1, 6, 6) and splits.train.num_classes == 3
    assert np.bincount(splits.test.labels).tolist() == [5, 5, 5]


def test_loader_returning_splits_is_used_as_is(tmp_path: Path) -> None:
    splits = load_dataset(f"{OWN}.ready_splits", data_dir=tmp_path, seed=0, test_fraction=0.5)
    assert own_components.CALLS[-1] == {"data_dir": str(tmp_path), "test_fraction": 0.5}
    assert (len(splits.train), len(splits.test)) == (10, 4)


def test_target_in_config_becomes_name_and_args() -> None:
    cfg = load_experiment(
        [f"model._target_={OWN}.TinyNet", "+model.hidden=5", f"dataset._target_={OWN}.blobs"]
    )
    assert cfg.model.name == f"{OWN}.TinyNet" and cfg.model.args == {"hidden": 5}
    assert cfg.dataset.name == f"{OWN}.blobs" and cfg.dataset.args == {}
    spec = experiment_spec(cfg, experiment_splits(cfg))
    assert spec.args == {"hidden": 5} and spec.input_shape == (1, 6, 6)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["model._target_=no_such_pkg.Net"], "model.name: cannot import 'no_such_pkg'"),
        ([f"model._target_={OWN}.TinyNet", "model.width=3"], "model.width: applies to fedleak"),
        (["dataset.name=nosuch"], "dataset.name: 'nosuch' is not one of"),
        (["+defense.extra.nosuch={}"], "defense.extra.nosuch: unknown defense 'nosuch'"),
        (["+defense.extra.test_sign_flip.scale=0"], "rejects settings {'scale': 0}"),
        (["+defense.extra.test_sign_flip.bad=1"], "unexpected keyword argument 'bad'"),
    ],
)
def test_erroneous_own_component_names_the_key(overrides: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_experiment(overrides)
    assert fragment in str(info.value)


def test_registered_defense_transforms_each_update_tensor() -> None:
    transform = create_defense("test_sign_flip", {"scale": -2.0})
    delta = np.ones(3, dtype=np.float32)
    assert transform(delta, np.random.default_rng(0)).tolist() == [-2.0, -2.0, -2.0]


def test_own_model_data_and_defense_in_a_federation(tmp_path: Path) -> None:
    """A whole federation (in-process clients and pool) on the researcher's own pieces."""
    base = [
        f"output_dir={tmp_path}",
        f"model._target_={OWN}.TinyNet",
        "+model.hidden=16",
        f"dataset._target_={OWN}.blobs",
        "+dataset.size=4",
        "federation.rounds=1",
        "federation.num_clients=2",
        "attack=analytic",
        "pool=inprocess",
    ]
    rows = {}
    for label, extra in (("plain", []), ("defended", ["+defense.extra.test_sign_flip={}"])):
        cfg = load_experiment(base + extra)
        paths = create_run_dir(dataclasses.replace(cfg, name=label))
        run_federation(LocalGrid(client_app, 2), cfg, paths)
        rows[label] = read_leakage(RunPaths(paths.root).leakage_jsonl)
    assert [r.status for r in rows["plain"]] == ["ok", "ok"]
    assert min(r.psnr_min for r in rows["plain"]) > 60  # exact on the own model and data
    # the sign flip reverses dL/dW and dL/db alike: the ratio, hence the attack, is unchanged,
    # but the label inferred from the flipped last layer is wrong
    assert all(r.label_accuracy == 0.0 for r in rows["defended"])


def test_entry_points_of_an_installed_package_are_discovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "fake_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[fedleak.test_group]\ntiny = {OWN}:TinyNet\nbroken = no_such_pkg:Thing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    table: Registry[object] = Registry("thing", entry_point_group="fedleak.test_group")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table.discover()
        table.discover()  # once per process
    assert dict(table.items()) == {"tiny": own_components.TinyNet}
    assert len(caught) == 1 and "skipped entry point 'broken'" in str(caught[0].message)
    assert str(tmp_path) in sys.path
