"""Flower ClientApp (``fedleak.clients.app:app``): train on the node's partition, reply, audit.

The reply carries the new weights and ``num-examples`` only. In evaluation mode the exact
samples used are written to the audit store keyed by (run, round, node); ground truth
never travels in the Flower message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedleak.clients.defense_mods import defense_mod
from fedleak.clients.secagg_mods import secagg_mod
from fedleak.clients.training import train_locally
from fedleak.simulator import record_keys as keys
from fedleak.simulator.config.client_setup import ClientSetup
from fedleak.simulator.config.hyperparams import hyperparams_from_config
from fedleak.simulator.data.datasets import ArrayDataset
from fedleak.simulator.models.architectures import build_model
from fedleak.simulator.runtime.audit import AuditStore, GroundTruth
from fedleak.simulator.runtime.experiment_data import (
    args_key,
    cached_partitions,
    cached_splits,
    model_spec_for,
)

app = ClientApp(mods=[secagg_mod, defense_mod])  # SecAgg+ masks what the defenses left


def _partition_of(context: Context) -> tuple[int, int]:
    try:
        return int(context.node_config[keys.PARTITION_ID]), int(
            context.node_config[keys.NUM_PARTITIONS]
        )
    except KeyError as exc:
        raise KeyError(
            f"node_config lacks {exc}; start the SuperNode with "
            f"--node-config 'partition-id=N num-partitions=M'"
        ) from None


def _client_rng(seed: int, server_round: int, partition_id: int) -> np.random.Generator:
    """Independent, reproducible stream per (seed, round, partition)."""
    return np.random.default_rng([seed, server_round, partition_id])


def _local_data(
    setup: ClientSetup, partition_id: int, num_partitions: int
) -> tuple[ArrayDataset, np.ndarray, np.ndarray]:
    """The experiment's train split (cached per process) and this partition's samples."""
    data_args = args_key(setup.dataset_args)
    splits = cached_splits(
        setup.dataset, setup.data_dir, setup.seed, setup.test_fraction, data_args
    )
    parts = cached_partitions(
        setup.dataset,
        setup.data_dir,
        setup.seed,
        setup.test_fraction,
        num_partitions,
        setup.partitioner,
        setup.alpha,
        data_args,
    )
    index = parts[partition_id]
    return splits.train, splits.train.inputs[index], splits.train.labels[index]


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local training on this node's partition."""
    torch.set_num_threads(1)  # client actors share few cores with the attack workers
    config: ConfigRecord = msg.content[keys.CONFIG]  # type: ignore[assignment]
    setup = ClientSetup.from_json(str(config[keys.CLIENT_SETUP]))
    hp = hyperparams_from_config(config)
    server_round = int(config[keys.SERVER_ROUND])  # type: ignore[arg-type]
    partition_id, num_partitions = _partition_of(context)
    train_split, inputs, labels = _local_data(setup, partition_id, num_partitions)

    spec = model_spec_for(
        setup.model,
        train_split,
        width=setup.model_width,
        activation=setup.model_activation,
        init=setup.model_init,
        stem=setup.model_stem,
        args=setup.model_args,
    )
    model = build_model(spec)
    arrays: ArrayRecord = msg.content[keys.ARRAYS]  # type: ignore[assignment]
    model.load_state_dict(arrays.to_torch_state_dict())

    result = train_locally(
        model,
        inputs,
        labels,
        hp,
        rng=_client_rng(setup.seed, server_round, partition_id),
        batch_labels=setup.batch_labels,
    )
    if setup.audit_dir is not None:
        AuditStore(Path(setup.audit_dir)).write(
            server_round,
            context.node_id,
            GroundTruth(result.used_inputs, result.used_labels, partition_id),
        )

    content = RecordDict(
        {
            keys.ARRAYS: ArrayRecord(model.state_dict()),
            keys.METRICS: MetricRecord(
                {keys.NUM_EXAMPLES: result.num_examples, keys.TRAIN_LOSS: result.mean_loss}
            ),
        }
    )
    return Message(content=content, reply_to=msg)
