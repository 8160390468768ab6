"""Each bad environment stops `fedleak run` before work starts, with its own exit code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from simulator import exit_codes
from simulator.cli import main


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
