"""Shared set-up for server tests: a small experiment run through the in-process LocalGrid."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from flwr.app import ArrayRecord, ConfigRecord

from fedleak.simulator import record_keys as keys
from fedleak.simulator.config.client_setup import ClientSetup
from fedleak.simulator.config.hyperparams import hyperparams_from_federation, hyperparams_to_config
from fedleak.simulator.config.schema import ExperimentConfig, FederationConfig, PoolConfig
from fedleak.simulator.models.architectures import ModelSpec
from fedleak.simulator.runtime.experiment_data import cached_splits, initial_model, model_spec_for


@pytest.fixture
def experiment(tmp_path: Path) -> ExperimentConfig:
    cfg = ExperimentConfig(output_dir=str(tmp_path))
    return replace(
        cfg,
        federation=FederationConfig(num_clients=3, rounds=3, batch_size=1, lr=0.1),
        pool=PoolConfig(backend="inprocess", workers=1),
    )


def model_spec(cfg: ExperimentConfig) -> ModelSpec:
    splits = cached_splits(
        cfg.dataset.name, cfg.dataset.data_dir, cfg.seed, cfg.dataset.test_fraction
    )
    return model_spec_for(
        cfg.model.name,
        splits.train,
        width=cfg.model.width,
        activation=cfg.model.activation,
        init=cfg.model.init,
    )


def initial_arrays(cfg: ExperimentConfig) -> ArrayRecord:
    return ArrayRecord(initial_model(model_spec(cfg), cfg.seed).state_dict())


def train_config(cfg: ExperimentConfig, audit_dir: Path) -> ConfigRecord:
    setup = ClientSetup.from_experiment(cfg, audit_dir=str(audit_dir))
    hp = hyperparams_to_config(hyperparams_from_federation(cfg.federation))
    return ConfigRecord({**hp, keys.CLIENT_SETUP: setup.to_json()})
