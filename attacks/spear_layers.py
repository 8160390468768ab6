"""Where SPEAR attacks: the first ``nn.Linear`` + ReLU on the input, and what follows it.

Layers are taken in ``named_modules()`` order, the forward order of ``nn.Sequential`` models.
"""

from __future__ import annotations

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


def binary_head(
    model: nn.Module, layer: nn.Linear, update: InterceptedUpdate
) -> torch.Tensor | None:
    """``v = W2[0] - W2[1]`` ``(M,)`` when ``layer``'s ReLU feeds a two-output head.

    With cross-entropy, every sample's gradient at the ReLU output is a multiple of ``v``
    (:mod:`fedleak.attacks.spear_binary`). ``None`` for any other head or loss.
    """
    found = following_linear(model, layer)
    if found is None or found[1].out_features != 2 or update.hyperparams.loss != "cross_entropy":
        return None
    weight = found[1].weight.detach()
    return weight[0] - weight[1]


def head_rank_note(
    model: nn.Module, layer: nn.Linear, update: InterceptedUpdate, batch: int
) -> str:
    """What bounds the rank of the gradient at ``layer``'s outputs below B, or ``""``.

    ``dL/dZ = (W2^T D) * ReLU'(Z)``, where ``D`` holds the samples' gradients at the next
    layer's outputs: a head of C outputs under cross-entropy gives ``D`` rank at most C - 1
    (its columns sum to zero), a hidden layer of k outputs rank at most k. Below B, mixtures
    of samples' columns cancel on the neurons the mixed samples all activate (the search
    rejects them, :func:`fedleak.attacks.spear_state.fits_head`), and with alike ReLU
    patterns a sample's inactive neurons may span fewer than B - 1 directions, which leaves
    its column unpinned.
    """
    found = following_linear(model, layer)
    if found is None:
        return ""
    name, after = found
    if leaf_modules(model)[-1][1] is after and update.hyperparams.loss == "cross_entropy":
        rank, source = after.out_features - 1, f"the {after.out_features}-output head"
    else:
        rank, source = after.out_features, f"layer {name!r}'s {after.out_features} outputs"
    if rank >= batch:
        return ""
    return (
        f"the gradient reaching this layer's outputs has rank at most {rank} < B = {batch} "
        f"({source}), so samples with alike ReLU patterns may leave their columns unpinned "
        "by zeros alone"
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
