"""Split a data set's sample indices among federated clients with Flower Datasets' partitioners.

The partitioners run offline on a local :class:`datasets.Dataset` built from the label array
(columns ``label`` and ``idx``), so the same code partitions every fedleak data set, with or
without a network. Each scheme is one entry of a name table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fedleak.attacks.name_table import Registry

__all__ = ["SCHEMES", "available_schemes", "partition_indices"]

_PartitionerFactory = Callable[[int, float, int, int], Any]
"""``factory(num_partitions, alpha, seed, min_partition_size) -> flwr_datasets Partitioner``."""


def _iid(num_partitions: int, alpha: float, seed: int, min_partition_size: int) -> Any:
    from flwr_datasets.partitioner import IidPartitioner

    # IidPartitioner takes contiguous shards; partition_indices shuffles the rows first.
    return IidPartitioner(num_partitions=num_partitions)


def _dirichlet(num_partitions: int, alpha: float, seed: int, min_partition_size: int) -> Any:
    from flwr_datasets.partitioner import DirichletPartitioner

    if alpha <= 0:
        raise ValueError(f"alpha must be positive for the dirichlet scheme, got {alpha}")
    return DirichletPartitioner(
        num_partitions=num_partitions,
        partition_by="label",
        alpha=alpha,
        min_partition_size=min_partition_size,
        self_balancing=True,
        shuffle=True,
        seed=seed,
    )


SCHEMES: Registry[_PartitionerFactory] = Registry("partitioning scheme")
"""Partitioning schemes: name -> factory of a Flower Datasets partitioner."""
SCHEMES.register("iid", _iid)
SCHEMES.register("dirichlet", _dirichlet)


def available_schemes() -> list[str]:
    """Names of the partitioning schemes, sorted."""
    return SCHEMES.names()


def _checked_labels(labels: np.ndarray, num_partitions: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if not 1 <= num_partitions <= len(labels):
        raise ValueError(
            f"num_partitions must be in [1, {len(labels)}] (the number of samples), "
            f"got {num_partitions}"
        )
    return labels


def partition_indices(
    labels: np.ndarray,
    num_partitions: int,
    *,
    scheme: str,
    alpha: float = 0.5,
    seed: int = 0,
    min_partition_size: int = 1,
) -> list[np.ndarray]:
    """Assign every sample index to exactly one of ``num_partitions`` clients.

    Parameters
    ----------
    labels : np.ndarray
        Integer labels of the data set, shape ``(N,)``.
    num_partitions : int
        Number of clients, ``1 <= num_partitions <= N``.
    scheme : {"iid", "dirichlet"}
        ``iid``: a seeded shuffle cut into equal contiguous shards (``IidPartitioner``).
        ``dirichlet``: per-class proportions drawn from ``Dir(alpha)`` (``DirichletPartitioner``
        with ``partition_by="label"`` and self-balancing); smaller ``alpha`` means more skew.
    alpha : float
        Dirichlet concentration (ignored by ``iid``).
    seed : int
        Seed of the shuffle and of the Dirichlet draws; the same seed gives the same partitions.
    min_partition_size : int
        ``dirichlet`` redraws (at most 10 times) until every client holds at least this many
        samples; 1 keeps small data sets such as ``digits`` partitionable at small ``alpha``.

    Returns
    -------
    list[np.ndarray]
        One sorted int64 index array per client; disjoint, and together they cover ``range(N)``.

    Raises
    ------
    ValueError
        For an unknown scheme (the message lists :func:`available_schemes`), or when
        ``num_partitions`` is not in ``[1, N]``.
    """
    factory = SCHEMES.get(scheme)
    labels = _checked_labels(labels, num_partitions)
    import datasets

    table = datasets.Dataset.from_dict(
        {"label": labels.astype(np.int64), "idx": np.arange(len(labels), dtype=np.int64)}
    )
    # Shuffling first makes iid shards random; for dirichlet it is harmless (the partitioner
    # groups by label, and the original index travels in the "idx" column).
    table = table.shuffle(seed=seed)
    partitioner = factory(num_partitions, alpha, seed, min_partition_size)
    partitioner.dataset = table
    return [
        np.sort(np.asarray(partitioner.load_partition(i)["idx"], dtype=np.int64))
        for i in range(num_partitions)
    ]
