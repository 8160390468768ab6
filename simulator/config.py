"""The experiment config: typed, validated at the boundary, every error named at once.

Hydra composes ``configs/`` into a plain mapping; :func:`experiment_from_mapping` turns it
into an :class:`ExperimentConfig` or raises one :class:`ConfigError` that lists every bad
key with the accepted values (Opacus' validators collect all errors the same way).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from attacks.types import LossName, TrainingMode
from simulator import exit_codes
from simulator.choices import (
    BATCH_LABELS,
    DEVICES,
    LOSSES,
    MODES,
    QUEUE_POLICIES,
    BatchLabels,
    Device,
    QueuePolicy,
    accepted_activations,
    accepted_attacks,
    accepted_datasets,
    accepted_inits,
    accepted_models,
    accepted_partitioners,
    accepted_pool_backends,
    accepted_stems,
    attack_requirements,
)
from simulator.errors import FedleakError
from simulator.targets import (
    choice_or_import,
    extra_defense_problems,
    own_model_problems,
    resolve_targets,
)

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
    (see :class:`attacks.types.Disclosure`); an attack whose ``requires`` is not covered
    is refused at startup.
    """

    names: list[str] = field(default_factory=lambda: ["analytic", "inverting_gradients"])
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
    """Registered defenses (:mod:`simulator.defenses`, e.g. other packages' entry points) by
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


# --------------------------------------------------------------------------- parsing


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, problems: list[str]) -> Any:
    """Check ``value`` against annotation ``tp``; int is accepted where float is expected."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = next(a for a in args if a is not type(None))
        return _coerce(value, inner, key, problems)
    if origin is typing.Literal:  # the type here; the value set in _check_choices, with the rest
        return _coerce(value, type(typing.get_args(tp)[0]), key, problems)
    if origin is list:
        if not isinstance(value, list | tuple):
            problems.append(f"{key}: expected a list, got {value!r}")
            return []
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            problems.append(f"{key}: expected a mapping, got {value!r}")
            return {}
        return {str(k): (dict(v) if isinstance(v, Mapping) else v) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        problems.append(f"{key}: expected an integer, got {value!r}")
        return 0
    if not isinstance(value, tp):
        problems.append(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return None
    return value


def _build(cls: type, data: Mapping[str, Any], prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in sorted(set(data) - fields):
        from simulator.key_hints import schema_keys, unknown_key_message

        accepted = [f"{prefix}{k}" for k in schema_keys(cls)]
        problems.append(unknown_key_message(f"{prefix}{key}", accepted))
    kwargs: dict[str, Any] = {}
    for name in fields & set(data):
        tp = hints[name]
        value = data[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping):
                problems.append(f"{prefix}{name}: expected a mapping, got {value!r}")
                continue
            kwargs[name] = _build(tp, value, f"{prefix}{name}.", problems)  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(value, tp, f"{prefix}{name}", problems)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # only reachable when a coercion above already failed
        problems.append(f"{prefix.rstrip('.') or 'config'}: {exc}")
        return cls()


# ------------------------------------------------------------------------ validation

Check = Callable[[ExperimentConfig], list[str]]


def _choice(key: str, value: Any, accepted: typing.Iterable[str]) -> list[str]:
    accepted = sorted(accepted)
    return [] if value in accepted else [f"{key}: {value!r} is not one of {accepted}"]


def _positive(key: str, value: float | int | None, *, allow_zero: bool = False) -> list[str]:
    if value is None:
        return []
    ok = value >= 0 if allow_zero else value > 0
    return [] if ok else [f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}"]


def _check_choices(cfg: ExperimentConfig) -> list[str]:
    fed = cfg.federation
    return [
        *choice_or_import("dataset.name", cfg.dataset.name, accepted_datasets()),
        *choice_or_import("model.name", cfg.model.name, accepted_models()),
        *own_model_problems(cfg.model.name, width=cfg.model.width, activation=cfg.model.activation),
        *_choice("model.init", cfg.model.init, accepted_inits()),
        *_choice("model.stem", cfg.model.stem, accepted_stems()),
        *(
            [f"model.stem: {cfg.model.stem!r} applies to model=resnet18 only; leave it 'auto'"]
            if cfg.model.stem != "auto" and cfg.model.name != "resnet18"
            else []
        ),
        *(
            _choice("model.activation", cfg.model.activation, accepted_activations())
            if cfg.model.activation is not None
            else []
        ),
        *_choice("federation.mode", fed.mode, MODES),
        *_choice("federation.loss", fed.loss, LOSSES),
        *_choice("federation.partitioner", fed.partitioner, accepted_partitioners()),
        *_choice("federation.batch_labels", fed.batch_labels, BATCH_LABELS),
        *_choice("pool.backend", cfg.pool.backend, accepted_pool_backends()),
        *_choice("pool.when_full", cfg.pool.when_full, QUEUE_POLICIES),
        *_choice("device", cfg.device, DEVICES),
        *(p for n in cfg.attack.names for p in _choice("attack.names", n, accepted_attacks())),
    ]


def _check_ranges(cfg: ExperimentConfig) -> list[str]:
    fed, pool = cfg.federation, cfg.pool
    problems = [
        *_positive("model.width", cfg.model.width),
        *_positive("federation.num_clients", fed.num_clients),
        *_positive("federation.rounds", fed.rounds),
        *_positive("federation.batch_size", fed.batch_size),
        *_positive("federation.lr", fed.lr),
        *_positive("federation.local_epochs", fed.local_epochs),
        *_positive("federation.local_steps", fed.local_steps),
        *_positive("federation.alpha", fed.alpha),
        *_positive("federation.client_cpus", fed.client_cpus),
        *_positive("federation.min_valid_replies", fed.min_valid_replies),
        *_positive("federation.max_num_examples", fed.max_num_examples),
        *_positive("federation.client_gpus", fed.client_gpus, allow_zero=True),
        *_positive("pool.workers", pool.workers),
        *_positive("pool.num_cpus", pool.num_cpus, allow_zero=True),
        *_positive("pool.num_gpus", pool.num_gpus, allow_zero=True),
        *_positive("pool.drain_timeout_s", pool.drain_timeout_s),
        *_positive("pool.max_pending", pool.max_pending),
        *_positive("pool.max_retries", pool.max_retries, allow_zero=True),
        *_positive("pool.attack_timeout_s", pool.attack_timeout_s),
        *(p for r in cfg.attack.rounds or [] for p in _positive("attack.rounds", r)),
    ]
    if not 0.0 < cfg.attack.client_fraction <= 1.0:
        problems.append(
            f"attack.client_fraction: must be in (0, 1], got {cfg.attack.client_fraction}"
        )
    if not 0.0 < fed.fraction_train <= 1.0:
        problems.append(f"federation.fraction_train: must be in (0, 1], got {fed.fraction_train}")
    if not 0.0 < cfg.dataset.test_fraction < 1.0:
        problems.append(
            f"dataset.test_fraction: must be in (0, 1), got {cfg.dataset.test_fraction}"
        )
    return problems


def _check_threat_model(cfg: ExperimentConfig) -> list[str]:
    from attacks.types import Disclosure

    accepted = [d.value for d in Disclosure]
    problems = [p for d in cfg.attack.disclose for p in _choice("attack.disclose", d, accepted)]
    disclosed = set(cfg.attack.disclose)
    for name in cfg.attack.names:
        if name not in accepted_attacks():
            continue
        missing = sorted(attack_requirements(name) - disclosed)
        if missing:
            problems.append(
                f"attack.names: {name!r} requires {missing} but attack.disclose is "
                f"{sorted(disclosed)}; disclose them or drop the attack"
            )
    for name in sorted(set(cfg.attack.params) - set(accepted_attacks())):
        problems.append(
            f"attack.params.{name}: no attack of that name; available: {accepted_attacks()}"
        )
    return problems


def _check_attack_params(cfg: ExperimentConfig) -> list[str]:
    from attacks.registry import create_attack

    problems = []
    for name, params in cfg.attack.params.items():
        if name not in accepted_attacks():
            continue
        try:
            create_attack(name, params)
        except (TypeError, ValueError) as exc:
            problems.append(f"attack.params.{name}: {exc}")
    return problems


def _check_defenses(cfg: ExperimentConfig) -> list[str]:
    dp, prune, quant, secagg = (
        cfg.defense.dp,
        cfg.defense.prune,
        cfg.defense.quantize,
        cfg.defense.secagg,
    )
    problems = [
        *_positive("defense.dp.clip", dp.clip),
        *_positive("defense.dp.noise", dp.noise, allow_zero=True),
        *_positive("defense.secagg.clipping_range", secagg.clipping_range),
        *_positive("defense.secagg.quantization_range", secagg.quantization_range),
    ]
    if not 0.0 < dp.delta < 1.0:
        problems.append(f"defense.dp.delta: must be in (0, 1), got {dp.delta}")
    if not 0.0 <= prune.fraction < 1.0:
        problems.append(
            f"defense.prune.fraction: the share of entries zeroed must be in [0, 1), "
            f"got {prune.fraction}"
        )
    if not 1 <= quant.bits <= 32:
        problems.append(f"defense.quantize.bits: must be in [1, 32], got {quant.bits}")
    problems += extra_defense_problems(cfg.defense.extra)
    if secagg.enabled:
        per_round = max(1, round(cfg.federation.num_clients * cfg.federation.fraction_train))
        if not 2 <= secagg.num_shares <= per_round:
            problems.append(
                f"defense.secagg.num_shares: must be in [2, clients per round = {per_round}], "
                f"got {secagg.num_shares}"
            )
        elif secagg.num_shares == 2 < per_round:
            problems.append(
                "defense.secagg.num_shares: Flower's SecAgg+ needs 3 or more shares, or "
                f"every client of the round ({per_round}), got 2"
            )
        if not 1 <= secagg.reconstruction_threshold <= secagg.num_shares:
            problems.append(
                f"defense.secagg.reconstruction_threshold: must be in [1, num_shares = "
                f"{secagg.num_shares}], got {secagg.reconstruction_threshold}"
            )
    return problems


CHECKS: tuple[Check, ...] = (
    _check_choices,
    _check_ranges,
    _check_defenses,
    _check_threat_model,
    _check_attack_params,
)


def defense_from_mapping(data: Mapping[str, Any]) -> DefenseConfig:
    """Parse the ``defense`` part alone (a client receives only that); raises ConfigError."""
    problems: list[str] = []
    defense = _build(DefenseConfig, data, "defense.", problems)
    if problems:
        raise ConfigError(problems)
    return typing.cast(DefenseConfig, defense)


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def experiment_from_mapping(data: Mapping[str, Any]) -> ExperimentConfig:
    """Parse and validate a composed config.

    Raises
    ------
    ConfigError
        Listing every unknown key, wrong type, value outside its accepted set or range,
        and threat-model mismatch, each naming its key.
    """
    problems: list[str] = []
    own = {"model": _field_names(ModelConfig), "dataset": _field_names(DatasetConfig)}
    cfg = _build(ExperimentConfig, resolve_targets(data, own), "", problems)
    if not problems:
        for check in CHECKS:
            problems.extend(check(cfg))
    if problems:
        raise ConfigError(problems)
    return typing.cast(ExperimentConfig, cfg)
