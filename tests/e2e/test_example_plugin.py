"""The example plug-in package, installed, in a federation whose attacks run in Ray workers.

The package is pip-installed (no dependencies, no network) into a temporary directory that
is put on ``PYTHONPATH``: fedleak's code imports nothing of it, so its attack, model, data
set and defense reach every process (the CLI, Flower's client actors, the attack pool's Ray
workers) only through the entry points its ``pyproject.toml`` declares.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fedleak.simulator.runtime.results import read_leakage

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "fedleak-example-plugin"
CLI = [sys.executable, "-m", "fedleak.simulator.cli"]
OVERRIDES = [
    "model.name=tanh_mlp",
    "dataset.name=photo_patches",
    "attack.names=[analytic,median_ratio]",
    "+defense.extra.random_mask.keep=0.7",
    "federation.rounds=2",
    "federation.num_clients=2",
]


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("plugin")
    source = root / "source"
    shutil.copytree(EXAMPLE, source)  # a build writes egg-info beside the sources: not here
    site = root / "site"
    offline = ["--no-deps", "--no-build-isolation", "--no-index", "--quiet"]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", *offline, "--target", str(site), str(source)],
        check=True,
        timeout=300,
    )
    assert any(site.glob("fedleak_example_plugin-*.dist-info/entry_points.txt"))
    path = os.pathsep.join([str(REPO), str(site), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def _fedleak(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_installed_plugin_is_listed(plugin_env: dict[str, str]) -> None:
    expected = {
        "attacks": "median_ratio",
        "models": "tanh_mlp",
        "datasets": "photo_patches",
        "defenses": "random_mask",
    }
    for kind, name in expected.items():
        proc = _fedleak(plugin_env, "list", kind)
        assert proc.returncode == 0, proc.stderr
        assert any(line.split()[0] == name for line in proc.stdout.splitlines()), proc.stdout


def test_plugin_attack_model_data_and_defense_in_a_ray_federation(
    plugin_env: dict[str, str], tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [*CLI, "run", f"output_dir={tmp_path}", *OVERRIDES],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=plugin_env,
    )
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    (config_file,) = tmp_path.glob("*/*/config.yaml")  # runs are named by their settings
    run_dir = config_file.parent
    assert "random_mask" in run_dir.parent.name
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["pool"]["backend"] == "ray"
    assert config["defense"]["extra"] == {"random_mask": {"keep": 0.7}}
    rows = read_leakage(run_dir / "leakage.jsonl")
    assert len(rows) == 2 * 2 * 2 and {r.status for r in rows} == {"ok"}
    # the attacks ran in Ray worker processes, which found median_ratio by entry point
    assert all(int(r.worker.rsplit(":", 1)[1]) != proc.pid for r in rows)
    for server_round in (1, 2):
        psnr = {
            attack: min(r.psnr_mean for r in rows if r.round == server_round and r.attack == attack)
            for attack in ("analytic", "median_ratio")
        }
        # the random mask zeroes ~30% of the one neuron analytic uses; the median of all
        # neurons' estimates ignores that minority (the example's point)
        assert psnr["median_ratio"] > psnr["analytic"] + 10.0, psnr
