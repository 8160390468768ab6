"""Whether the experiment's model can take every training step its clients will take.

A model in training mode can refuse small batches: BatchNorm needs more than one value per
channel, so a ResNet whose last stage sees a 1x1 map cannot train on one sample (PyTorch:
"Expected more than 1 value per channel when training"). Found mid-run, that kills round 1;
found here, before anything starts, it is a config error that names the keys to change.
"""

from __future__ import annotations

import numpy as np

from fedleak.simulator.config.schema import ConfigError, ExperimentConfig
from fedleak.simulator.models.architectures import resolved_stem, training_batch_problem
from fedleak.simulator.runtime.experiment_data import (
    args_key,
    cached_partitions,
    experiment_spec,
    experiment_splits,
)


def _smallest_equal_label_batch(labels: np.ndarray, batch: int, epochs: bool) -> int:
    counts = np.unique(labels, return_counts=True)[1]
    if not epochs:  # one batch per step, drawn from a label with enough samples if any
        return min(batch, int(counts.max()))
    return min(int(c % batch) or min(int(c), batch) for c in counts)


def smallest_client_batch(cfg: ExperimentConfig, partitions: list[np.ndarray]) -> int:
    """The fewest samples any client puts in one local step (the clients' batching rules).

    Parameters
    ----------
    cfg : ExperimentConfig
        The experiment (batch size, mode, local steps or epochs, batch labels).
    partitions : list[np.ndarray]
        Each client's labels.
    """
    fed = cfg.federation
    epochs = fed.mode == "fedavg" and not fed.local_steps
    smallest = fed.batch_size
    for labels in partitions:
        if len(labels) == 0:
            continue
        if fed.batch_labels == "equal":
            size = _smallest_equal_label_batch(labels, fed.batch_size, epochs)
        elif epochs and len(labels) > fed.batch_size:  # a short last batch per epoch
            size = len(labels) % fed.batch_size or fed.batch_size
        else:
            size = min(fed.batch_size, len(labels))
        smallest = min(smallest, size)
    return smallest


def check_model_trains(cfg: ExperimentConfig) -> None:
    """Raise a :class:`ConfigError` when a client's smallest batch cannot be trained on.

    Raises
    ------
    ConfigError
        Naming model, dataset and batch keys, and what to change.
    """
    splits = experiment_splits(cfg)
    fed = cfg.federation
    parts = cached_partitions(
        cfg.dataset.name,
        cfg.dataset.data_dir,
        cfg.seed,
        cfg.dataset.test_fraction,
        fed.num_clients,
        fed.partitioner,
        fed.alpha,
        args_key(cfg.dataset.args),
    )
    labels = [splits.train.labels[index] for index in parts]
    batch = smallest_client_batch(cfg, labels)
    spec = experiment_spec(cfg, splits)
    problem = training_batch_problem(spec, batch)
    if problem is None:
        return
    stem = f" (stem {resolved_stem(spec)})" if spec.name == "resnet18" else ""
    larger = "use larger inputs"
    if spec.name == "resnet18" and resolved_stem(spec) == "imagenet":
        larger = "use model.stem=cifar, which keeps larger feature maps"
    raise ConfigError(
        [
            f"model.name={spec.name}{stem} cannot train on dataset.name={cfg.dataset.name} "
            f"inputs {spec.input_shape} in a batch of {batch} sample(s), which "
            f"federation.batch_size={fed.batch_size} (mode {fed.mode}) gives some client: "
            f"{problem}. Raise federation.batch_size (in fedavg epochs, to one that leaves "
            f"no single-sample last batch), or {larger}"
        ]
    )
