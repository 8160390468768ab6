"""The model's first parametrised layer: where the raw input enters the weights.

Three attacks ask the same question of a model: the analytic attack and SPEAR recover the
input exactly only through an ``nn.Linear`` with bias on the whole flattened input, and
inverting gradients needs no image prior behind one. Layers are taken in
``named_modules()`` order, the forward order of ``nn.Sequential`` models; parameter-free
modules before the layer (``Flatten``) are assumed to only reshape.
"""

from __future__ import annotations

from torch import nn


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every module without children, in ``named_modules()`` order."""
    return [(n, m) for n, m in model.named_modules() if next(m.children(), None) is None]


def first_parametrised_layer(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first leaf module with parameters of its own, and its name; ``None`` if none."""
    for name, module in leaf_modules(model):
        if next(module.parameters(recurse=False), None) is not None:
            return name, module
    return None


def dense_input_layer(model: nn.Module, input_numel: int) -> nn.Linear | None:
    """The first parametrised layer when it is an ``nn.Linear`` with bias on all
    ``input_numel`` input values (its gradient fixes a single input exactly), else ``None``."""
    found = first_parametrised_layer(model)
    if found is None:
        return None
    layer = found[1]
    if isinstance(layer, nn.Linear) and layer.bias is not None and layer.in_features == input_numel:
        return layer
    return None
