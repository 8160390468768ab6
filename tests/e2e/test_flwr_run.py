"""`flwr run .` in Flower's own local simulation, from a clean FLWR_HOME, as a Flower user types it.

The managed local SuperLink starts on the first ``flwr run`` and keeps running; the module
fixture ends it and everything it started, by process id.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fedleak.simulator.config.compose import load_experiment
from fedleak.simulator.runtime.results import read_leakage
from tests.e2e.flower_local import REPO, LocalFlower

pytestmark = pytest.mark.slow

RUN_DIR_FILES = (
    "config.yaml",
    "leakage.jsonl",
    "leakage.csv",
    "summary.txt",
    "training.jsonl",
    "training.csv",
    "report.html",
    "final_model.pt",
    "checkpoint.pt",
)
OVERRIDES = (
    "model=lenet federation.rounds=2 attack=inverting_gradients "
    "+attack.params.inverting_gradients.iterations=20 seed=1"
)
_RUN_ID = re.compile(r"Successfully started run (\d+)")
_RUN_DIR = re.compile(r"fedleak: experiment '[^']+' -> (\S+)")


@pytest.fixture(scope="module")
def flower(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFlower]:
    root = tmp_path_factory.mktemp("flwr")
    local = LocalFlower(home=root / "flwr-home", cwd=root / "work")
    assert not any(local.home.iterdir())  # a clean FLWR_HOME: flwr writes its default config
    try:
        yield local
    finally:
        local.stop()
        assert not local.started_sessions(), "processes of the managed SuperLink survived"


def _flwr_run(flower: LocalFlower, *args: str) -> tuple[Path, str]:
    """``flwr run REPO --stream ARGS``; the run directory it wrote and its output."""
    proc = flower.flwr("run", str(REPO), "--stream", *args, timeout=400)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:]
    run_id = _RUN_ID.search(out)
    assert run_id is not None, out[-4000:]
    # --stream exits 0 even when the ServerApp failed: the SuperLink's status tells
    assert flower.run_status(run_id.group(1)) == "finished:completed", out[-4000:]
    assert "Traceback" not in out and "fedleak: error" not in out, out[-4000:]
    run_dir = _RUN_DIR.search(out)
    assert run_dir is not None, out[-4000:]
    return Path(run_dir.group(1)), out


def _assert_complete_run_dir(run_dir: Path, rounds: int, clients: int, attacks: int) -> None:
    for name in RUN_DIR_FILES:
        assert (run_dir / name).is_file(), f"{name} missing in {run_dir}"
    assert any((run_dir / "grids").glob("round_*.png"))
    assert any((run_dir / "plots").glob("*.png"))
    rows = read_leakage(run_dir / "leakage.jsonl")
    assert len({(r.round, r.node_id, r.attack) for r in rows}) == len(rows)
    assert len(rows) == rounds * clients * attacks
    assert all(r.status == "ok" for r in rows)


def test_flwr_run_in_local_simulation_writes_a_fedleak_run(flower: LocalFlower) -> None:
    run_dir, out = _flwr_run(flower)
    # Flower's default local federation has 2 SuperNodes: the experiment adopts them
    assert "federation.num_clients=2" in out
    assert run_dir.is_relative_to(flower.cwd / "runs" / "default")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["federation"]["num_clients"] == 2
    assert config["pool"]["backend"] == "ray"  # attacks went through the Ray pool
    default = load_experiment([])  # the embedded default experiment, on 2 SuperNodes
    rounds, attacks = default.federation.rounds, len(default.attack.names)
    for r in range(1, rounds + 1):
        assert f"round {r}/{rounds} | clients trained 2" in out
    assert "psnr_mean" in out and f"results in {run_dir}" in out
    _assert_complete_run_dir(run_dir, rounds=rounds, clients=2, attacks=attacks)
    analytic = [r for r in read_leakage(run_dir / "leakage.jsonl") if r.attack == "analytic"]
    assert min(r.psnr_min for r in analytic) >= 60.0  # exact, as in `fedleak run`


def test_flwr_run_takes_fedleak_overrides_in_run_config(flower: LocalFlower) -> None:
    run_dir, out = _flwr_run(flower, "--run-config", f'overrides="{OVERRIDES}"')
    assert "round 2/2 | clients trained 2" in out
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    expected = load_experiment(OVERRIDES.split()).to_dict()
    expected["federation"]["num_clients"] = 2
    expected["pool"]["num_cpus"] = 0.0
    assert config == expected  # the same experiment `fedleak run OVERRIDES` resolves
    _assert_complete_run_dir(run_dir, rounds=2, clients=2, attacks=1)
