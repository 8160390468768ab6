"""Hugging Face data through Flower Datasets' FederatedDataset, offline: local parquet files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from fedleak.clients.app import app as client_app
from fedleak.server.federation import run_federation
from fedleak.simulator import exit_codes
from fedleak.simulator.cli import main
from fedleak.simulator.config.compose import load_experiment
from fedleak.simulator.data.datasets import DatasetUnavailableError, load_dataset
from fedleak.simulator.runtime.experiment_data import args_key, cached_partitions
from fedleak.simulator.runtime.results import read_jsonl_rows, read_leakage
from fedleak.simulator.runtime.rundir import create_run_dir
from tests.flower_harness import LocalGrid

N_TRAIN, N_TEST = 240, 60


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's digits as a Hugging Face data set on disk: PNG images + class labels."""
    import datasets
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)}
    )
    folder = tmp_path_factory.mktemp("digits_parquet")
    for split, rows in (("train", range(N_TRAIN)), ("test", range(N_TRAIN, N_TRAIN + N_TEST))):
        images = [Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)) for i in rows]
        labels = [int(digits.target[i]) for i in rows]
        data = datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
        data.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
    return folder


def test_local_directory_loads_both_splits_as_images(parquet_dir: Path, tmp_path: Path) -> None:
    splits = load_dataset(
        "huggingface", data_dir=tmp_path, seed=0, test_fraction=0.2, args={"path": str(parquet_dir)}
    )
    assert (len(splits.train), len(splits.test)) == (N_TRAIN, N_TEST)
    assert splits.train.input_shape == (1, 8, 8) and splits.train.inputs.dtype == np.float32
    assert splits.train.inputs.min() >= 0.0 and splits.train.inputs.max() <= 1.0
    assert splits.train.num_classes == 10  # from the ClassLabel feature
    from sklearn.datasets import load_digits

    expected = load_digits().images[:N_TRAIN] / 16
    assert np.abs(splits.train.inputs[:, 0] - expected).max() < 1 / 255 + 1e-6  # same pixels


def test_parquet_files_without_test_split_are_split_stratified(
    parquet_dir: Path, tmp_path: Path
) -> None:
    splits = load_dataset(
        "huggingface",
        data_dir=tmp_path,
        seed=0,
        test_fraction=0.25,
        args={"path": str(parquet_dir / "train-*.parquet")},
    )
    assert (len(splits.train), len(splits.test)) == (N_TRAIN * 3 // 4, N_TRAIN // 4)


def test_partitions_cover_the_local_data_once(parquet_dir: Path, tmp_path: Path) -> None:
    key = args_key({"path": str(parquet_dir)})
    parts = cached_partitions("huggingface", str(tmp_path), 0, 0.2, 4, "dirichlet", 0.5, key)
    joined = np.sort(np.concatenate(parts))
    assert len(parts) == 4 and np.array_equal(joined, np.arange(N_TRAIN))


def test_local_parquet_data_trains_in_a_federation(parquet_dir: Path, tmp_path: Path) -> None:
    cfg = load_experiment(
        [
            f"output_dir={tmp_path}",
            "dataset=huggingface",
            f"dataset.args.path={parquet_dir}",
            "federation.num_clients=3",
            "federation.rounds=2",
            "federation.batch_size=4",
            "federation.lr=0.1",
            "attack=analytic",
            "pool=inprocess",
        ]
    )
    paths = create_run_dir(dataclasses.replace(cfg, name="hf"))
    run_federation(LocalGrid(client_app, 3), cfg, paths)
    training = read_jsonl_rows(paths.training_jsonl)
    assert [int(r["round"]) for r in training] == [0, 1, 2]  # 0: the initial model
    losses = [float(r["train_loss"]) for r in training[1:]]
    assert np.isfinite(losses).all() and losses[1] < losses[0]  # seeded: it learns
    rows = read_leakage(paths.leakage_jsonl)
    assert len(rows) == 6  # every client's update of both rounds was attacked
    assert {r.status for r in rows} == {"not_applicable"}  # B=4: analytic says why


def test_erroneous_local_path_is_unavailable_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(DatasetUnavailableError, match="no split 'train' could be read"):
        load_dataset(
            "huggingface",
            data_dir=tmp_path,
            seed=0,
            test_fraction=0.2,
            args={"path": str(tmp_path / "missing")},
        )
    code = main(
        [
            "run",
            f"output_dir={tmp_path}/runs",
            "dataset=huggingface",
            f"dataset.args.path={tmp_path}/missing",
        ]
    )
    assert code == exit_codes.DATASET_UNAVAILABLE
    assert "local directory or parquet files offline" in capsys.readouterr().err
