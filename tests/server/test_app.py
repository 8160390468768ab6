"""The ServerApp's experiment: run-config overrides, JSON, environment; Flower's own simulation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flwr.app import Context, RecordDict

from fedleak.server.app import prepare, resolve_config, run_config_overrides
from fedleak.server.flower_runtime import adapt_to_federation, flower_starts_ray, wait_for_ray
from fedleak.simulator import exit_codes
from fedleak.simulator import record_keys as keys
from fedleak.simulator.config.compose import load_experiment
from fedleak.simulator.config.schema import ConfigError
from fedleak.simulator.runtime.preflight import PreflightError
from tests.flower_harness import LocalGrid


def _context(**run_config: str) -> Context:
    return Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config)


@pytest.fixture(autouse=True)
def _no_launcher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (keys.ENV_EXPERIMENT_JSON, keys.ENV_RUN_DIR, keys.ENV_START_ROUND):
        monkeypatch.delenv(name, raising=False)


def test_overrides_in_run_config_resolve_like_the_command_line() -> None:
    text = "model=lenet federation.rounds=5 'attack.names=[analytic, dlg]'"
    cfg = resolve_config(_context(overrides=text))
    assert cfg == load_experiment(
        ["model=lenet", "federation.rounds=5", "attack.names=[analytic, dlg]"]
    )
    assert cfg.model.name == "lenet" and cfg.federation.rounds == 5


def test_no_run_config_is_the_embedded_default() -> None:
    assert resolve_config(_context()) == load_experiment()


def test_experiment_json_still_accepted() -> None:
    cfg = load_experiment(["seed=7"])
    assert resolve_config(_context(**{keys.EXPERIMENT_JSON: json.dumps(cfg.to_dict())})) == cfg


@pytest.mark.parametrize(
    ("run_config", "fragment"),
    [
        ({"overrides": "model=nosuch"}, "model: 'nosuch' is not one of"),
        ({"overrides": "seed=0,1"}, "sweeps several values"),
        ({"overrides": "model='lenet"}, "No closing quotation"),
        ({"overrides": "seed=1", keys.EXPERIMENT_JSON: "{}"}, "either overrides or"),
    ],
)
def test_erroneous_run_config_names_the_problem(run_config: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        resolve_config(_context(**run_config))


def test_overrides_split_as_a_shell_does() -> None:
    ctx = _context(overrides='name="my run" seed=3')
    assert run_config_overrides(ctx) == ["name=my run", "seed=3"]


def test_prepare_checks_paths_before_anything_is_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    grid = LocalGrid(client_app=None, num_nodes=2)  # type: ignore[arg-type]
    with pytest.raises(PreflightError) as info:
        prepare(grid, _context(overrides="output_dir=/proc/fedleak-test"))
    assert info.value.exit_code == exit_codes.PATH_UNUSABLE
    assert "fedleak: error: output_dir: '/proc/fedleak-test'" in capsys.readouterr().out


def test_adapting_to_flowers_federation_takes_its_supernodes() -> None:
    cfg = load_experiment(["federation.num_clients=4", "pool.num_cpus=2"])
    adapted, note = adapt_to_federation(cfg, num_nodes=2)
    assert adapted.federation.num_clients == 2 and adapted.pool.num_cpus == 0.0
    assert adapted.model == cfg.model and adapted.attack == cfg.attack
    assert "num-supernodes" in note and "pool.address" not in note
    _, note = adapt_to_federation(load_experiment(["pool.address=10.0.0.1:6379"]), num_nodes=2)
    assert "pool.address=10.0.0.1:6379 is not used" in note


def test_adapting_revalidates_the_experiment() -> None:
    cfg = load_experiment(["defense=secagg", "federation.num_clients=4"])
    with pytest.raises(ConfigError, match=r"defense\.secagg\.num_shares"):
        adapt_to_federation(cfg, num_nodes=1)


def test_flower_starts_ray_only_in_its_in_memory_simulation() -> None:
    grid = LocalGrid(client_app=None, num_nodes=1)  # type: ignore[arg-type]
    assert not flower_starts_ray(grid)  # not Flower's in-memory grid: a deployment or a test


def test_waiting_for_ray_gives_up_with_a_reason() -> None:
    with pytest.raises(TimeoutError, match="did not start Ray"):
        wait_for_ray(timeout_s=0.2, is_up=lambda: False)
    calls = iter([False, False, True])
    wait_for_ray(timeout_s=5, is_up=lambda: next(calls))


def test_pyproject_declares_the_run_config_keys() -> None:
    import tomllib

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    config = tomllib.loads(pyproject.read_text())["tool"]["flwr"]["app"]["config"]
    assert {keys.OVERRIDES, keys.EXPERIMENT_JSON} <= set(config)
