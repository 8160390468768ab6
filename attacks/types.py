"""Typed payloads that cross the boundary between the curious server and an attack.

The ground-truth split follows breaching's threat model: an attack sees only an
:class:`InterceptedUpdate` (what an honest-but-curious Flower server holds) and returns a
:class:`Reconstruction` or an :class:`AttackFailure`. Ground truth lives elsewhere (the
audit store) and is only joined with a reconstruction by the auditor.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import numpy as np
import torch

TrainingMode = Literal["fedsgd", "fedavg"]
LossName = Literal["cross_entropy", "mse"]


class Disclosure(StrEnum):
    """Facts beyond a plain Flower server's knowledge that an experiment may disclose.

    A real Flower server always knows the global model, the client's reply, the
    hyperparameters it configured and ``num-examples``; these need no disclosure.
    """

    LABELS = "labels"
    """The true labels of the client's batch (a stronger attacker than Flower's)."""


@dataclass(frozen=True)
class TrainingHyperparams:
    """The training recipe the server configured for the round (so the server knows it).

    Attributes
    ----------
    mode : {"fedsgd", "fedavg"}
        ``fedsgd``: one gradient step on one batch; ``fedavg``: several local SGD steps.
    lr : float
        Client learning rate of plain SGD.
    batch_size : int
        Mini-batch size B.
    local_steps : int
        Number of local SGD steps K configured (1 in ``fedsgd`` mode); 0 in ``fedavg`` mode
        when clients instead run ``local_epochs`` passes over their partition.
    loss : {"cross_entropy", "mse"}
        Training objective the clients use.
    local_epochs : int
        Local epochs E in ``fedavg`` mode when ``local_steps`` is 0.
    """

    mode: TrainingMode
    lr: float
    batch_size: int
    local_steps: int
    loss: LossName = "cross_entropy"
    local_epochs: int = 1


Modality = Literal["image", "tabular", "signal"]


@dataclass(frozen=True)
class InputDomain:
    """What the server knows of the input space: public, like the input shape.

    A tabular attacker knows the table's schema (which input columns one-hot encode which
    discrete feature: Vero et al., "TabLeak: Tabular Data Leakage in Federated Learning",
    ICML 2023); any attacker knows whether the model reads images, rows or signals.

    Attributes
    ----------
    modality : {"image", "tabular", "signal"}
        ``image``: ``(C, H, W)`` pixels in ``[low, high]``; ``tabular``: flat rows of one-hot
        blocks and standardised continuous columns; ``signal``: 1-D series, z-normalised.
    low, high : float | None
        Bounds of every input value (``None``: unbounded). Images lie in ``[0, 1]``.
    discrete_groups : tuple[tuple[int, int], ...]
        ``(start, stop)`` column ranges of the one-hot blocks of a flat tabular row.
    """

    modality: Modality = "image"
    low: float | None = 0.0
    high: float | None = 1.0
    discrete_groups: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class InterceptedUpdate:
    """One client's reply for one round, as the curious server sees it.

    Attributes
    ----------
    server_round : int
        Flower round number (1-based).
    node_id : int
        Flower node id of the sender (``msg.metadata.src_node_id``).
    global_params : OrderedDict[str, np.ndarray]
        The global model the server sent, by state-dict name.
    client_params : OrderedDict[str, np.ndarray]
        The model the client sent back, same names and shapes.
    num_examples : int
        The ``num-examples`` the client reported.
    hyperparams : TrainingHyperparams
        What the server configured for this round.
    input_shape : tuple[int, ...]
        Shape of one input sample (public: it is part of the model's architecture).
    num_classes : int
        Number of output classes of the model.
    disclosed_labels : np.ndarray | None
        Only set when the experiment discloses :attr:`Disclosure.LABELS`.
    input_domain : InputDomain
        Modality, value bounds and one-hot layout of the inputs (public schema).
    """

    server_round: int
    node_id: int
    global_params: OrderedDict[str, np.ndarray]
    client_params: OrderedDict[str, np.ndarray]
    num_examples: int
    hyperparams: TrainingHyperparams
    input_shape: tuple[int, ...]
    num_classes: int
    disclosed_labels: np.ndarray | None = None
    input_domain: InputDomain = field(default_factory=InputDomain)

    def is_zero(self) -> bool:
        """Whether the client sent back the global model unchanged (nothing to invert)."""
        return all(
            np.array_equal(self.client_params[name], value)
            for name, value in self.global_params.items()
        )

    def pseudo_gradient(self, names: Iterable[str] | None = None) -> OrderedDict[str, torch.Tensor]:
        """Return ``(global - client) / lr`` per state-dict entry.

        In FedSGD mode this is exactly the gradient of the client's batch loss (Geiping et al.
        2020, eq. 2); in FedAvg mode it is the sum of the K local gradients. Only trainable
        parameters have a gradient: buffers (BatchNorm running statistics, its integer step
        counter) are side information, read with :mod:`fedleak.attacks.batchnorm`.

        Parameters
        ----------
        names : Iterable[str] | None
            The entries to return, e.g. ``[n for n, _ in model.named_parameters()]``; ``None``
            returns every floating-point entry (integer counters have no gradient).

        Raises
        ------
        KeyError
            If a requested name is not in the update.
        """
        lr = self.hyperparams.lr
        if names is None:
            floating = self.global_params.items()
            names = [n for n, v in floating if np.issubdtype(np.asarray(v).dtype, np.floating)]
        result: OrderedDict[str, torch.Tensor] = OrderedDict()
        for name in names:
            before, after = self.global_params[name], self.client_params[name]
            # np.asarray: a 0-d difference is a numpy scalar, which torch.from_numpy refuses
            result[name] = torch.from_numpy(np.asarray((before - after) / lr))
        return result


@dataclass(frozen=True)
class Reconstruction:
    """What an attack recovered from one update.

    Attributes
    ----------
    inputs : np.ndarray
        Recovered samples, shape ``(B, *input_shape)``, in the data's range (the update's
        :class:`InputDomain`).
    labels : np.ndarray
        Recovered (or disclosed) integer labels, shape ``(B,)``.
    confidence : np.ndarray | None
        Per-sample confidence in [0, 1] where the attack has one.
    iterations : int
        Optimiser iterations spent (0 for closed-form attacks).
    wall_time_s : float
        Seconds spent in the attack.
    details : Mapping[str, float | int | str]
        Attack-specific facts (e.g. the neuron used), recorded alongside the metrics.
    initial_inputs : np.ndarray | None
        For optimisation attacks, the starting point of the returned solution, so the auditor
        can report how far the attack moved beyond its random initialisation.
    """

    inputs: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray | None = None
    iterations: int = 0
    wall_time_s: float = 0.0
    details: Mapping[str, float | int | str] = field(default_factory=dict)
    initial_inputs: np.ndarray | None = None


class Status(StrEnum):
    """The status of one leakage row, written as its value (``"ok"``, ...) in ``leakage.jsonl``.

    ``ok``: the attack returned a reconstruction; ``failed``: it raised or found nothing;
    ``not_applicable``: its preconditions do not hold for this model or update; ``timeout`` /
    ``skipped``: the pool gave up on it; ``rejected``: the server refused the reply, so no
    attack ran. A ``StrEnum``: a member equals its string value.
    """

    OK = "ok"
    FAILED = "failed"
    NOT_APPLICABLE = "not_applicable"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"
    REJECTED = "rejected"


AttackStatus = Literal[Status.FAILED, Status.NOT_APPLICABLE, Status.TIMEOUT, Status.SKIPPED]
"""The statuses of an :class:`AttackFailure` (an attack's own outcome)."""


@dataclass(frozen=True)
class AttackFailure:
    """An attack that produced no reconstruction, and why. A recorded result, never a crash.

    Attributes
    ----------
    status : {"failed", "not_applicable", "timeout", "skipped"}
        ``failed``: the attack raised or found nothing; ``not_applicable``: its preconditions
        do not hold for this model or update; ``timeout`` / ``skipped``: the pool gave up.
    reason : str
        Human-readable cause, e.g. the exception type and message.
    wall_time_s : float
        Seconds spent before giving up.
    """

    status: AttackStatus
    reason: str
    wall_time_s: float = 0.0

    def __post_init__(self) -> None:
        # a plain string ("failed") becomes its member; anything else is refused here
        status = Status(self.status)
        if status in (Status.OK, Status.REJECTED):
            raise ValueError(f"an AttackFailure cannot have status {status.value!r}")
        object.__setattr__(self, "status", status)


AttackOutcome = Reconstruction | AttackFailure
