"""The contract every gradient-inversion attack fulfils, and the runner that never raises."""

from __future__ import annotations

import dataclasses
import time
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from fedleak.attacks.types import (
    AttackFailure,
    AttackOutcome,
    Disclosure,
    InterceptedUpdate,
    Reconstruction,
    Status,
)

EFFORT_SCALES: dict[str, float] = {"fast": 0.25, "default": 1.0, "thorough": 4.0}
"""Factor on an optimisation attack's budget (iterations, time) per ``effort`` level.

Closed-form attacks (analytic, direct_batch) take no budget and ignore it."""


BOUNDS: dict[str, Callable[[float], bool]] = {
    ">= 1": lambda value: value >= 1,
    "> 0": lambda value: value > 0,
    ">= 0": lambda value: value >= 0,
}
"""The lower bounds :meth:`AttackConfig.require` checks (a NaN satisfies none)."""


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """Base of every attack's settings; subclasses add typed fields with defaults.

    Attributes
    ----------
    effort : str
        One knob for every attack's budget: ``fast``, ``default`` or ``thorough``
        (:data:`EFFORT_SCALES`); an attack scales its own iterations or time by it.
    """

    effort: str = "default"

    def __post_init__(self) -> None:
        if self.effort not in EFFORT_SCALES:
            raise ValueError(f"effort must be one of {sorted(EFFORT_SCALES)}, got {self.effort!r}")

    def require(self, bound: str, *keys: str) -> None:
        """Raise ``ValueError("<key> must be <bound>, got <value>")`` for the first key that
        breaks ``bound`` (one of :data:`BOUNDS`: ``">= 1"``, ``"> 0"``, ``">= 0"``)."""
        holds = BOUNDS[bound]
        for key in keys:
            value = getattr(self, key)
            if not holds(value):
                raise ValueError(f"{key} must be {bound}, got {value}")

    def scaled(self, budget: float) -> float:
        """``budget`` times the effort's factor."""
        return budget * EFFORT_SCALES[self.effort]

    def scaled_count(self, budget: int) -> int:
        """``budget`` times the effort's factor, rounded, at least 1."""
        return max(1, round(self.scaled(budget)))


class Attack(ABC):
    """A gradient-inversion attack on one :class:`~fedleak.attacks.types.InterceptedUpdate`.

    Subclasses set :attr:`name`, :attr:`config_class` and, where they need more than a
    plain Flower server knows, :attr:`requires`.

    Parameters
    ----------
    config : AttackConfig
        An instance of :attr:`config_class`.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[AttackConfig]] = AttackConfig
    requires: ClassVar[frozenset[Disclosure]] = frozenset()

    def __init__(self, config: AttackConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, "
                f"got {type(self.config).__name__}"
            )

    def not_applicable_reason(self, model: nn.Module, update: InterceptedUpdate) -> str | None:
        """Return why the attack cannot run on this model and update, or ``None``."""
        return None

    def architecture_reason(
        self, model: nn.Module, input_shape: tuple[int, ...], num_classes: int
    ) -> str | None:
        """Return why the attack can never run on this architecture, whatever the update.

        ``None`` (the default) when some update of this model may be attacked. A run uses it
        before it starts, to put a fallback attack in the place of attacks that could only
        ever record ``not_applicable`` (see :func:`fedleak.attacks.registry.resolve_attack_names`).
        """
        return None

    @abstractmethod
    def reconstruct(
        self,
        model: nn.Module,
        update: InterceptedUpdate,
        *,
        device: torch.device,
        seed: int,
    ) -> Reconstruction:
        """Recover the client's batch from ``update``.

        Parameters
        ----------
        model : nn.Module
            The architecture with the update's global parameters loaded, on ``device``.
        update : InterceptedUpdate
            Everything the server knows about this reply; nothing else is given.
        device : torch.device
            Where to compute.
        seed : int
            Seed for every random choice of the attack (initialisation, sampling).
        """


def execute_attack(
    attack: Attack,
    model: nn.Module,
    update: InterceptedUpdate,
    *,
    device: torch.device,
    seed: int,
) -> AttackOutcome:
    """Run ``attack`` and turn every precondition miss or exception into an AttackFailure.

    A failed attack is a recorded result, never a crashed run (Flower's VCE worker does the
    same with client exceptions).
    """
    start = time.perf_counter()
    reason = attack.not_applicable_reason(model, update)
    if reason is not None:
        return AttackFailure(Status.NOT_APPLICABLE, reason, time.perf_counter() - start)
    try:
        result = attack.reconstruct(model, update, device=device, seed=seed)
    except Exception as exc:  # any attack bug must become a row, not a crash
        return AttackFailure(
            Status.FAILED, f"{type(exc).__name__}: {exc}", time.perf_counter() - start
        )
    return dataclasses.replace(result, wall_time_s=time.perf_counter() - start)


def config_from_mapping(
    config_class: type[AttackConfig], params: Mapping[str, Any]
) -> AttackConfig:
    """Build ``config_class`` from ``params``.

    Names every unknown key with the accepted ones, and every scalar setting of the wrong
    type (``iterations=2.5``, ``signed_gradients='yes'``) with the type it takes, before any
    value's own check runs.
    """
    accepted = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown setting(s) {unknown} for {config_class.__name__}; "
            f"accepted: {sorted(accepted)}"
        )
    hints = typing.get_type_hints(config_class)
    wrong = [
        f"{key} must be {_type_name(hints[key])}, got {value!r}"
        for key, value in params.items()
        if not _has_type(value, hints[key])
    ]
    if wrong:
        raise ValueError(f"{config_class.__name__}: " + "; ".join(wrong))
    return config_class(**dict(params))


_SCALARS: dict[Any, tuple[type, ...]] = {
    bool: (bool,),
    int: (int,),
    float: (int, float),
    str: (str,),
}
"""Annotated scalar types and the Python types a setting of that type may hold."""

_UNIONS = (typing.Union, types.UnionType)


def _scalar_options(hint: Any) -> list[Any] | None:
    """The scalar types (and ``None``) a hint allows, or ``None`` for a type not checked here."""
    options = list(typing.get_args(hint)) if typing.get_origin(hint) in _UNIONS else [hint]
    if all(option in _SCALARS or option is type(None) for option in options):
        return options
    return None


def _has_type(value: Any, hint: Any) -> bool:
    options = _scalar_options(hint)
    if options is None:
        return True
    if value is None:
        return type(None) in options
    if isinstance(value, bool):  # a bool is an int to Python, not a count or a size here
        return bool in options
    return any(
        option is not type(None) and isinstance(value, _SCALARS[option]) for option in options
    )


def _type_name(hint: Any) -> str:
    options = _scalar_options(hint) or [hint]
    return " or ".join(
        "null" if o is type(None) else getattr(o, "__name__", str(o)) for o in options
    )
