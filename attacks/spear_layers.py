"""Where SPEAR attacks: the first ``nn.Linear`` + ReLU on the input, and what follows it.

Layers are taken in ``named_modules()`` order, the forward order of ``nn.Sequential`` models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fedleak.attacks.first_layer import first_parametrised_layer, leaf_modules
from fedleak.attacks.types import InterceptedUpdate


def relu_input_layer(model: nn.Module, input_numel: int) -> tuple[str, nn.Linear] | str:
    """The model's first layer if it is ``nn.Linear`` (with bias) on the input, then ReLU.

    Returns the layer's name and module, or the reason it does not qualify. Layers are
    taken in ``named_modules()`` order, the forward order of ``nn.Sequential`` models.
    """
    found = first_parametrised_layer(model)
    if found is None:
        return "the model has no parametrised layer"
    name, module = found
    if not isinstance(module, nn.Linear) or module.bias is None:
        what = "nn.Linear without bias" if isinstance(module, nn.Linear) else type(module).__name__
        return (
            f"the model's first parametrised layer {name!r} is a {what}: SPEAR needs an "
            "nn.Linear with bias on the input"
        )
    if module.in_features != input_numel:
        return (
            f"layer {name!r} has in_features={module.in_features}, not the "
            f"{input_numel}-dimensional input: it would recover features, not the data"
        )
    leaves = leaf_modules(model)
    index = next(i for i, (_, m) in enumerate(leaves) if m is module)
    follower = leaves[index + 1][1] if index + 1 < len(leaves) else None
    if not isinstance(follower, nn.ReLU):
        return (
            f"layer {name!r} is followed by {type(follower).__name__}, not ReLU: SPEAR needs "
            "the zeros ReLU puts in dL/dZ"
        )
    return name, module


def following_linear(model: nn.Module, layer: nn.Module) -> tuple[str, nn.Linear] | None:
    """The ``nn.Linear`` that takes ``layer``'s ReLU output directly, if there is one."""
    leaves = leaf_modules(model)
    for index, (_, module) in enumerate(leaves[:-2]):
        if module is layer:
            name, after = leaves[index + 2]
            if not isinstance(after, nn.Linear) or not isinstance(leaves[index + 1][1], nn.ReLU):
                return None
            return (name, after) if after.in_features == layer.out_features else None
    return None


def parameter_name(prefix: str, leaf: str) -> str:
    """``prefix.leaf``, or ``leaf`` for a model that is the layer itself."""
    return f"{prefix}.{leaf}" if prefix else leaf


@dataclass(frozen=True)
class NextLayer:
    """The ``nn.Linear`` that takes the attacked layer's ReLU output directly.

    Attributes
    ----------
    name : str
        Its module name.
    linear : nn.Linear
        The layer.
    cross_entropy_head : bool
        It is the model's last layer and the client trains with cross-entropy.
    """

    name: str
    linear: nn.Linear
    cross_entropy_head: bool

    @property
    def rank(self) -> int:
        """The most independent directions the samples' gradients at its outputs span.

        A C-output head under cross-entropy gives ``softmax - onehot``, whose entries sum
        to zero: rank C - 1. Any other layer: its number of outputs.
        """
        outputs = self.linear.out_features
        return outputs - 1 if self.cross_entropy_head and outputs > 1 else outputs

    def describe(self) -> str:
        """``the C-output head`` or ``layer 'name''s k outputs``, for messages."""
        outputs = self.linear.out_features
        if self.cross_entropy_head:
            return f"the {outputs}-output head"
        return f"layer {self.name!r}'s {outputs} outputs"


def next_layer(model: nn.Module, layer: nn.Linear, update: InterceptedUpdate) -> NextLayer | None:
    """The layer after ``layer``'s ReLU (see :class:`NextLayer`), or None where none is linear."""
    found = following_linear(model, layer)
    if found is None:
        return None
    name, after = found
    last = leaf_modules(model)[-1][1] is after
    return NextLayer(name, after, last and update.hyperparams.loss == "cross_entropy")


def binary_head(
    model: nn.Module, layer: nn.Linear, update: InterceptedUpdate
) -> torch.Tensor | None:
    """``v = W2[0] - W2[1]`` ``(M,)`` when ``layer``'s ReLU feeds a two-output head.

    With cross-entropy, every sample's gradient at the ReLU output is a multiple of ``v``
    (:mod:`fedleak.attacks.spear_binary`). ``None`` for any other next layer or loss.
    """
    after = next_layer(model, layer, update)
    if after is None or not after.cross_entropy_head or after.linear.out_features != 2:
        return None
    weight = after.linear.weight.detach()
    return weight[0] - weight[1]


def head_rank_note(
    model: nn.Module, layer: nn.Linear, update: InterceptedUpdate, batch: int
) -> str:
    """What bounds the rank of the gradient at ``layer``'s outputs below B, or ``""``.

    ``dL/dZ = (W2^T D) * ReLU'(Z)``, where ``D`` holds the samples' gradients at the next
    layer's outputs, of rank at most :attr:`NextLayer.rank`. Below B, mixtures of samples'
    columns cancel on the neurons the mixed samples all activate (the search rejects them,
    :func:`fedleak.attacks.spear_state.fits_head`), and with alike ReLU patterns a sample's
    inactive neurons may span fewer than B - 1 directions, which leaves its column unpinned.
    """
    after = next_layer(model, layer, update)
    if after is None or after.rank >= batch:
        return ""
    return (
        f"the gradient reaching this layer's outputs has rank at most {after.rank} < B = "
        f"{batch} ({after.describe()}), so samples with alike ReLU patterns may leave their "
        "columns unpinned by zeros alone"
    )


def wrong_batch_cause(
    model: nn.Module, layer: nn.Linear, update: InterceptedUpdate, batch: int
) -> str:
    """Why B columns of ``Q`` were found that do not reproduce the gradient."""
    note = head_rank_note(model, layer, update, batch)
    return (
        "the B columns found do not reproduce the gradient: some are mixtures of samples "
        "whose ReLU patterns are so alike that the mixture is as sparse as a sample's column"
        + (f" ({note})" if note else "")
    )
