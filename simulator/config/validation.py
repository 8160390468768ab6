"""Parsing and validation of the experiment config: every error named at once.

:func:`parse_experiment` turns Hydra's composed mapping into the typed
:class:`~fedleak.simulator.config.schema.ExperimentConfig` (unknown keys and wrong types first),
then runs every check of :data:`CHECKS` (accepted values, ranges, defenses, threat model, attack
settings) and raises one :class:`~fedleak.simulator.config.schema.ConfigError` listing every
problem, each naming its key and the accepted values (Opacus' validators collect all errors the
same way).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from fedleak.simulator.config.choices import (
    BATCH_LABELS,
    DEVICES,
    LOSSES,
    MODES,
    QUEUE_POLICIES,
    accepted_activations,
    accepted_attacks,
    accepted_datasets,
    accepted_efforts,
    accepted_inits,
    accepted_models,
    accepted_partitioners,
    accepted_pool_backends,
    accepted_stems,
    attack_requirements,
)
from fedleak.simulator.config.schema import (
    ConfigError,
    DatasetConfig,
    DefenseConfig,
    ExperimentConfig,
    ModelConfig,
)
from fedleak.simulator.config.targets import (
    choice_or_import,
    extra_defense_problems,
    own_model_problems,
    resolve_targets,
)

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
        from fedleak.simulator.config.key_hints import schema_keys, unknown_key_message

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
        *(
            p
            for n in cfg.attack.fallback
            for p in _choice("attack.fallback", n, accepted_attacks())
        ),
        *_choice("attack.effort", cfg.attack.effort, accepted_efforts()),
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
    from fedleak.attacks.types import Disclosure

    accepted = [d.value for d in Disclosure]
    problems = [p for d in cfg.attack.disclose for p in _choice("attack.disclose", d, accepted)]
    disclosed = set(cfg.attack.disclose)
    for key, names in (
        ("attack.names", cfg.attack.names),
        ("attack.fallback", cfg.attack.fallback),
    ):
        for name in names:
            if name not in accepted_attacks():
                continue
            missing = sorted(attack_requirements(name) - disclosed)
            if missing:
                problems.append(
                    f"{key}: {name!r} requires {missing} but attack.disclose is "
                    f"{sorted(disclosed)}; disclose them or drop the attack"
                )
    for name in sorted(set(cfg.attack.params) - set(accepted_attacks())):
        problems.append(
            f"attack.params.{name}: no attack of that name; available: {accepted_attacks()}"
        )
    return problems


def _check_attack_params(cfg: ExperimentConfig) -> list[str]:
    from fedleak.attacks.registry import create_attack

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


def parse_defense(data: Mapping[str, Any]) -> DefenseConfig:
    """Parse the ``defense`` part alone (a client receives only that); raises ConfigError."""
    problems: list[str] = []
    defense = _build(DefenseConfig, data, "defense.", problems)
    if problems:
        raise ConfigError(problems)
    return typing.cast(DefenseConfig, defense)


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def parse_experiment(data: Mapping[str, Any]) -> ExperimentConfig:
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
