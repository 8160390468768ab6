"""What a ClientApp needs to know to train (sent by the server in the train ConfigRecord).

None of this is ground truth: it names the data set and partitioning of the experiment,
the architecture, the seed and, in evaluation mode, the audit store's location.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from fedleak.simulator.config.schema import DefenseConfig, ExperimentConfig, defense_from_mapping


@dataclass(frozen=True)
class ClientSetup:
    """Client-side settings of one experiment, serialisable to a ConfigRecord string."""

    dataset: str
    data_dir: str
    test_fraction: float
    partitioner: str
    alpha: float
    model: str
    model_width: int | None
    model_activation: str | None
    model_init: str
    seed: int
    audit_dir: str | None
    batch_labels: str = "random"
    model_stem: str = "auto"
    defense: dict[str, Any] = field(default_factory=dict)
    """The experiment's :class:`DefenseConfig` as a dict (see :meth:`defense_config`)."""
    dataset_args: dict[str, Any] = field(default_factory=dict)
    """``dataset.args``: settings of the data set's loader (your own, or ``huggingface``)."""
    model_args: dict[str, Any] = field(default_factory=dict)
    """``model.args``: arguments of a model given by import path or entry point."""

    @classmethod
    def from_experiment(cls, cfg: ExperimentConfig, audit_dir: str | None) -> ClientSetup:
        """Take the client-relevant part of ``cfg``; ``audit_dir`` None disables auditing."""
        return cls(
            dataset=cfg.dataset.name,
            data_dir=cfg.dataset.data_dir,
            test_fraction=cfg.dataset.test_fraction,
            partitioner=cfg.federation.partitioner,
            alpha=cfg.federation.alpha,
            model=cfg.model.name,
            model_width=cfg.model.width,
            model_activation=cfg.model.activation,
            model_init=cfg.model.init,
            model_stem=cfg.model.stem,
            seed=cfg.seed,
            audit_dir=audit_dir if cfg.attack.audit else None,
            batch_labels=cfg.federation.batch_labels,
            defense=asdict(cfg.defense),
            dataset_args=dict(cfg.dataset.args),
            model_args=dict(cfg.model.args),
        )

    def defense_config(self) -> DefenseConfig:
        """The defenses this client applies to its update."""
        return defense_from_mapping(self.defense)

    def to_json(self) -> str:
        """Serialise for the ConfigRecord."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ClientSetup:
        """Inverse of :meth:`to_json`."""
        data: dict[str, Any] = json.loads(text)
        return cls(**data)
