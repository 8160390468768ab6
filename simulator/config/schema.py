"""The experiment config's schema: typed, frozen, each default written once.

Hydra composes ``configs/`` into a plain mapping; :func:`experiment_from_mapping` turns it
into an :class:`ExperimentConfig` or raises one :class:`ConfigError` that lists every bad
key with the accepted values. The parsing and the checks live in
:mod:`fedleak.simulator.config.validation`; this module holds what a config *is*.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fedleak.attacks.types import LossName, TrainingMode
from fedleak.simulator import exit_codes
from fedleak.simulator.config.choices import (
    BatchLabels,
    Device,
    QueuePolicy,
)
from fedleak.simulator.errors import FedleakError

UPDATE_DEFENSES = ("prune", "dp", "quantize", "secagg")
"""Defenses on the update, in the order a client applies them."""


class ConfigError(FedleakError, ValueError):
    """One or more invalid config entries; ``problems`` holds one line per entry."""

    exit_code = exit_codes.CONFIG_ERROR

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid experiment config:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class DatasetConfig:
    """Which data the clients hold. ``name``: a registered data set (``digits`` offline) or
    a loader's import path (``_target_``); ``args``: the loader's own settings."""

    name: str = "digits"
    data_dir: str = "data"
    test_fraction: float = 0.2
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    """The architecture every participant trains; ``None`` keeps the model's own default."""

    name: str = "mlp"
    width: int | None = None
    activation: str | None = None
    init: str = "default"
    stem: str = "auto"
    """resnet18's input stem: ``auto`` (CIFAR stem below 64 px a side), ``cifar``, ``imagenet``."""
    weights: str | None = None
    """State-dict file the global model starts from (a trained model); ``None``: seeded init."""
    args: dict[str, Any] = field(default_factory=dict)
    """Arguments of a model given by import path (``_target_``) or entry point."""


@dataclass(frozen=True)
class FederationConfig:
    """The federation and the training recipe the server configures each round."""

    num_clients: int = 4
    rounds: int = 3
    mode: TrainingMode = "fedsgd"
    batch_size: int = 1
    lr: float = 0.1
    local_epochs: int = 1
    local_steps: int | None = None
    loss: LossName = "cross_entropy"
    batch_labels: BatchLabels = "random"
    """``random`` batches, or ``equal``: every batch drawn from one label (Eloul et al. 2024's
    mixing)."""
    fraction_train: float = 1.0
    partitioner: str = "iid"
    alpha: float = 0.5
    client_cpus: float = 1.0
    client_gpus: float = 0.0
    min_valid_replies: int = 1
    """A round with fewer valid replies stops the run with a clear error."""
    max_num_examples: int = 1_000_000
    """A reply claiming more examples than this is rejected as absurd."""


@dataclass(frozen=True)
class AttackSelection:
    """Which attacks run on each update, their settings, and the threat model.

    ``disclose`` lists what the server may know beyond a plain Flower server
    (see :class:`fedleak.attacks.types.Disclosure`); an attack whose ``requires`` is not covered
    is refused at startup.
    """

    names: list[str] = field(default_factory=lambda: ["analytic"])
    fallback: list[str] = field(default_factory=lambda: ["inverting_gradients"])
    """Attacks that run when no attack of ``names`` can apply to the model's architecture
    (e.g. the analytic attack on a convolutional network), so such a run still measures."""
    effort: str = "default"
    """Budget of every optimisation attack: fast (1/4), default, thorough (4x)."""
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    disclose: list[str] = field(default_factory=list)
    audit: bool = True
    rounds: list[int] | None = None
    """Rounds whose updates are attacked; ``None``: every round."""
    client_fraction: float = 1.0
    """Fraction of each round's updates attacked, drawn with the experiment seed."""
    client_ids: list[int] | None = None
    """Only these Flower node ids (after the fraction is applied); ``None``: any."""


@dataclass(frozen=True)
class DpSettings:
    """Local differential privacy: clip each update to L2 norm ``clip``, add N(0, (noise*clip)^2).

    Applied by Flower's ``LocalDpMod`` on the client to the whole update (all layers
    flattened); ``noise`` is the noise multiplier sigma, ``delta`` the target of the
    accountant that reports epsilon.
    """

    enabled: bool = False
    clip: float = 1.0
    noise: float = 0.01
    delta: float = 1e-5


@dataclass(frozen=True)
class PruneSettings:
    """Top-k sparsification: the ``fraction`` of update entries with smallest magnitude set to 0."""

    enabled: bool = False
    fraction: float = 0.9


@dataclass(frozen=True)
class QuantizeSettings:
    """Uniform stochastic quantisation of each update tensor to ``bits`` bits (2^bits levels)."""

    enabled: bool = False
    bits: int = 8


@dataclass(frozen=True)
class SecAggSettings:
    """Flower's SecAgg+: the server sees only the sum of the round's updates.

    ``num_shares``: secret shares per client (SecAgg+'s neighbourhood; the number of clients
    means plain SecAgg); ``reconstruction_threshold``: shares needed to unmask a dropped client.
    """

    enabled: bool = False
    num_shares: int = 3
    reconstruction_threshold: int = 2
    clipping_range: float = 8.0
    quantization_range: int = 4194304


@dataclass(frozen=True)
class DefenseConfig:
    """Client-side defenses, combinable (``defense=[dp,prune]``); each has an ``enabled`` flag.

    They act on the update ``client - global`` in a fixed order: prune, dp, quantize (then
    secagg masks what is left). Gradient mixing (Eloul et al. 2024) is a training recipe:
    ``defense=mse_loss`` sets ``federation.loss=mse``, ``defense=equal_labels`` sets
    ``federation.batch_labels=equal``.
    """

    dp: DpSettings = field(default_factory=DpSettings)
    prune: PruneSettings = field(default_factory=PruneSettings)
    quantize: QuantizeSettings = field(default_factory=QuantizeSettings)
    secagg: SecAggSettings = field(default_factory=SecAggSettings)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Registered defenses (:mod:`fedleak.simulator.defenses`, e.g. other packages' entry points) by
    name with their settings; each acts after quantize, before secagg."""

    def active(self) -> list[str]:
        """Names of the enabled update defenses, in the order they are applied."""
        own = [name for name in UPDATE_DEFENSES[:-1] if getattr(self, name).enabled]
        return own + list(self.extra) + (["secagg"] if self.secagg.enabled else [])


@dataclass(frozen=True)
class PoolConfig:
    """The attack workers: backend, size and resources per worker."""

    backend: str = "ray"
    workers: int = 1
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    address: str | None = None
    drain_timeout_s: float = 300.0
    max_pending: int = 256
    """Attacks queued or running at most; beyond it ``when_full`` applies."""
    when_full: QueuePolicy = "wait"
    """``wait``: the pipeline waits for room (training never does); ``skip``: record ``skipped``."""
    max_retries: int = 1
    """Re-runs of an attack whose worker process died (SIGKILL, OOM) before it is ``failed``."""
    persist_updates: bool = True
    """Keep every attacked update on disk, so a resumed run re-attacks what was pending."""
    attack_timeout_s: float = 600.0
    """Longest one attack may run; its worker is then replaced and the row is ``timeout``.

    Ray backend only: threads of the ``inprocess`` backend cannot be stopped."""


@dataclass(frozen=True)
class ReportConfig:
    """What the end-of-run report computes beyond the recorded rows."""

    lpips_weights: str | None = None
    """torchvision's ImageNet AlexNet checkpoint (``alexnet-owt-7be5be79.pth``), or a folder
    holding it, for LPIPS; ``None``: ``$TORCH_HOME/hub/checkpoints/``. Never downloaded."""


@dataclass(frozen=True)
class ExperimentConfig:
    """One fedleak experiment, fully resolved."""

    name: str = "default"
    seed: int = 0
    output_dir: str = "runs"
    device: Device = "auto"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    attack: AttackSelection = field(default_factory=AttackSelection)
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/YAML-ready)."""
        return dataclasses.asdict(self)


def experiment_from_mapping(data: Mapping[str, Any]) -> ExperimentConfig:
    """Parse and validate a composed config; one :class:`ConfigError` lists every problem
    (:func:`fedleak.simulator.config.validation.parse_experiment`)."""
    from fedleak.simulator.config.validation import parse_experiment

    return parse_experiment(data)


def defense_from_mapping(data: Mapping[str, Any]) -> DefenseConfig:
    """Parse the ``defense`` part alone (a client receives only that); raises ConfigError."""
    from fedleak.simulator.config.validation import parse_defense

    return parse_defense(data)
