"""Compose ``configs/`` with Hydra and command-line overrides into an ExperimentConfig."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from fedleak.simulator.config.schema import ConfigError, ExperimentConfig, experiment_from_mapping

GROUPS = ("dataset", "model", "federation", "attack", "defense", "pool", "experiment")
"""Config groups; ``experiment`` presets are added with ``+experiment=NAME``."""


def config_dir() -> Path:
    """The ``configs/`` folder: ``$FEDLEAK_CONFIG_DIR`` or the one beside the packages."""
    env = os.environ.get("FEDLEAK_CONFIG_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "configs"
    if not (path / "config.yaml").is_file():
        hint = "set FEDLEAK_CONFIG_DIR to fedleak's configs/"
        raise ConfigError([f"config directory {path} has no config.yaml; {hint}"])
    return path


def _group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def _explain_hydra_error(exc: Exception, overrides: Sequence[str]) -> ConfigError:
    """Turn Hydra's composition errors into messages that name the key and accepted values."""
    message = str(exc)
    for group in GROUPS:
        if f"'{group}/" in message or f"In '{group}'" in message:
            choice = next(
                (o.split("=", 1)[1] for o in overrides if o.lstrip("+~").startswith(f"{group}=")),
                "?",
            )
            options = _group_options(group)
            first_line = message.splitlines()[0]
            return ConfigError([f"{group}: {choice!r} is not one of {options} ({first_line})"])
    if "not in struct" in message or "Could not override" in message:
        from fedleak.simulator.config.key_hints import schema_keys, unknown_key_message

        key = message.split("'")[1] if "'" in message else "?"
        return ConfigError([unknown_key_message(key, schema_keys(ExperimentConfig))])
    return ConfigError([f"overrides {list(overrides)}: {message.splitlines()[0]}"])


def compose_mapping(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose the config tree with ``overrides`` (Hydra syntax) into a plain dict."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            composed = compose(config_name="config", overrides=list(overrides))
        data = OmegaConf.to_container(composed, resolve=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise _explain_hydra_error(exc, overrides) from exc
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(data, dict)
    return {str(k): v for k, v in data.items()}


@lru_cache(maxsize=4)
def _default_mapping(directory: str) -> dict[str, Any]:
    """The default experiment of a config directory (what run names are relative to)."""
    return compose_mapping(())


@lru_cache(maxsize=16)
def _name_reference(directory: str, model: str) -> dict[str, Any]:
    """What a run with ``model`` is named against: the default experiment, except that the
    model's settings are its own group's defaults (``model=lenet`` keeps lenet's ``init:
    default`` without being named ``default-init`` against the default mlp's He init)."""
    default = _default_mapping(directory)
    if model == default["model"]["name"] or model not in _group_options("model"):
        return default
    settings = compose_mapping((f"model={model}",))["model"]
    return {**default, "model": {**settings, "name": default["model"]["name"]}}


def load_experiment(overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Compose, parse and validate; raises :class:`ConfigError` naming every bad key.

    A run that keeps the default ``name`` is named after what it changes
    (:func:`fedleak.simulator.config.naming.derive_run_name`); ``name=...`` keeps the name given.
    """
    from fedleak.simulator.config.naming import DEFAULT_NAME, derive_run_name, names_itself

    cfg = experiment_from_mapping(compose_mapping(overrides))
    if cfg.name != DEFAULT_NAME or names_itself(overrides):
        return cfg
    derived = derive_run_name(cfg.to_dict(), _name_reference(str(config_dir()), cfg.model.name))
    return dataclasses.replace(cfg, name=derived)
