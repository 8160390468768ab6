"""Each bad environment stops `fedleak run` before work starts, with its own exit code."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fedleak.simulator import exit_codes
from fedleak.simulator.cli import main
from fedleak.simulator.runtime.setting_warnings import read_warnings


@pytest.mark.parametrize(
    ("overrides", "code", "fragment"),
    [
        (["device=cuda"], exit_codes.CUDA_UNAVAILABLE, "no GPU is visible"),
        (["pool.num_gpus=0.5"], exit_codes.CUDA_UNAVAILABLE, "pool.num_gpus=0"),
        (["pool.address=127.0.0.1:1"], exit_codes.RAY_UNREACHABLE, "ray start --head"),
        (["model.weights=/no/such/model.pt"], exit_codes.MODEL_WEIGHTS_MISSING, "final_model.pt"),
        (
            ["dataset=mnist", "dataset.data_dir=/nonexistent-offline"],
            exit_codes.DATASET_UNAVAILABLE,
            "digits",
        ),
    ],
)
def test_erroneous_environment_exits_with_its_code_before_starting(
    overrides: list[str],
    code: int,
    fragment: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if code == exit_codes.CUDA_UNAVAILABLE and torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    if code == exit_codes.DATASET_UNAVAILABLE:
        import torchvision.datasets

        def offline(*args: object, **kwargs: object) -> None:
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: network unreachable")

        monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    assert main(["run", f"output_dir={tmp_path}", *overrides]) == code
    assert fragment in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was started or written


def test_erroneous_report_dir_exits_with_its_code(tmp_path: Path) -> None:
    assert main(["report", str(tmp_path)]) == exit_codes.RUN_DIR_INVALID


def test_exit_codes_are_distinct() -> None:
    codes = [v for k, v in vars(exit_codes).items() if k.isupper()]
    assert len(codes) == len(set(codes))


def test_more_clients_than_samples_stops_before_the_run_in_a_few_lines(tmp_path: Path) -> None:
    """The issue's command: 2000 clients for 1437 digits used to run 86 s into 264k lines."""
    command = [sys.executable, "-m", "fedleak.simulator.cli", "run", f"output_dir={tmp_path}"]
    command += ["federation.num_clients=2000", "federation.rounds=1", "attack=analytic"]
    start = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    output = proc.stdout + proc.stderr
    assert proc.returncode == exit_codes.CONFIG_ERROR, output[-3000:]
    assert len(output.splitlines()) < 20, output[-3000:]
    assert elapsed < 30.0
    assert "federation.num_clients=2000" in proc.stderr and "1437" in proc.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (
            ["defense=secagg", "federation.num_clients=4", "defense.secagg.num_shares=9"],
            "defense.secagg.num_shares: must be in [2, clients per round = 4], got 9",
        ),
        (
            [
                "federation.partitioner=dirichlet",
                "federation.alpha=0.001",
                "federation.num_clients=40",
            ],
            "federation.partitioner=dirichlet with federation.alpha=0.001 cannot give each of "
            "federation.num_clients=40 clients a sample",
        ),
    ],
)
def test_impossible_settings_stop_before_the_run_naming_their_keys(
    overrides: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", f"output_dir={tmp_path}", *overrides]) == exit_codes.CONFIG_ERROR
    assert fragment in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_warnings_are_printed_at_start_and_kept_in_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import fedleak.simulator.runtime.simulation

    started: list[Path] = []
    monkeypatch.setattr(
        fedleak.simulator.runtime.simulation,
        "run_in_simulation",
        lambda cfg, paths, **kwargs: started.append(paths.root),
    )
    overrides = ["federation.batch_size=1000", "attack.disclose=[labels]", "attack=analytic"]
    overrides.append("federation.num_clients=4")
    assert main(["run", f"output_dir={tmp_path}", *overrides]) == exit_codes.OK
    err = capsys.readouterr().err
    printed = [line for line in err.splitlines() if line.startswith("fedleak: warning: ")]
    assert len(printed) == 2
    assert "attack.disclose: 'labels' is disclosed but no attack" in printed[0]
    assert "federation.batch_size=1000 is larger than the partition of 4 of 4" in printed[1]
    (run_dir,) = started
    assert read_warnings(run_dir) == [line.removeprefix("fedleak: warning: ") for line in printed]
