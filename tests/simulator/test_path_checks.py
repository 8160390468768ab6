"""Every path a user gives is checked before work starts: a clear message and its exit code."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from fedleak.simulator import exit_codes
from fedleak.simulator.cli import main
from fedleak.simulator.config.compose import load_experiment
from fedleak.simulator.runtime.preflight import check_output_dir


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a_file.txt"
    path.write_text("not a directory\n")
    return path


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["run", *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, captured.err


@pytest.mark.parametrize(
    ("output_dir", "fragment"),
    [
        ("/proc/fedleak-x", "output_dir: '/proc/fedleak-x' cannot hold the run directory"),
        ("{file}", "a_file.txt is not a directory"),
        ("{file}/runs", "a_file.txt is not a directory"),
    ],
)
def test_erroneous_output_dir(
    output_dir: str, fragment: str, a_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run([f"output_dir={output_dir.format(file=a_file)}"], capsys)
    assert code == exit_codes.PATH_UNUSABLE
    assert fragment in err and "give a writable directory" in err


def test_erroneous_data_dir(
    a_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run([f"output_dir={tmp_path}/runs", f"dataset.data_dir={a_file}"], capsys)
    assert code == exit_codes.PATH_UNUSABLE
    assert f"dataset.data_dir: '{a_file}' cannot hold data sets" in err
    assert not (tmp_path / "runs").exists()  # nothing was created


def _write_weights(path: Path, kind: str) -> None:
    if kind == "text":
        path.write_text("root:x:0:0:root:/root:/bin/bash\n")  # what /etc/passwd looks like
    elif kind == "list":
        torch.save([1, 2, 3], path)
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"weight": "not a tensor"}))
    elif kind == "other-model":
        torch.save(nn.Linear(3, 2).state_dict(), path)


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("missing", "does not exist"),
        ("text", "is not a file written by torch.save"),
        ("list", "holds a list, not a mapping"),
        ("pickle", "is not a readable torch state dict"),
        ("other-model", "does not fit model 'mlp' on 'digits' (missing 1.bias"),
    ],
)
def test_erroneous_model_weights(
    kind: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "weights.pt"
    _write_weights(weights, kind)
    code, err = _run([f"output_dir={tmp_path}/runs", f"model.weights={weights}"], capsys)
    assert code == exit_codes.MODEL_WEIGHTS_MISSING
    assert f"model.weights: '{weights}'" in err and fragment in err
    assert not (tmp_path / "runs").exists()


def test_etc_passwd_as_weights_is_refused_before_the_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = _run(["model.weights=/etc/passwd"], capsys)
    assert code == exit_codes.MODEL_WEIGHTS_MISSING
    assert "'/etc/passwd' is not a file written by torch.save" in err


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: d / "nowhere", "does not exist"),
        (lambda d: d / "a_file.txt", "is not a directory"),
        (lambda d: d, "has no config.yaml"),
        (lambda d: _with_config(d, ":::: ["), "has an unreadable config.yaml (ParserError"),
        (lambda d: _with_config(d, "- a list\n"), "has a config.yaml that is not a mapping"),
    ],
)
def test_erroneous_resume_dir(
    make: object, fragment: str, tmp_path: Path, a_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = make(tmp_path)  # type: ignore[operator]
    code, err = _run(["--resume", str(run_dir)], capsys)
    assert code == exit_codes.RUN_DIR_INVALID
    assert f"--resume: '{run_dir}' {fragment}" in err


def _with_config(folder: Path, text: str) -> Path:
    run_dir = folder / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(text)
    return run_dir


def test_output_dir_check_creates_nothing_it_leaves_behind(tmp_path: Path) -> None:
    cfg = load_experiment([f"output_dir={tmp_path}/a/b/c"])
    check_output_dir(cfg)
    assert not any(tmp_path.iterdir())
