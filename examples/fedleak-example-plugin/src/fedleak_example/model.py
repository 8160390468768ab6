"""``tanh_mlp``: a two-layer perceptron with tanh units, every hidden neuron always active."""

from __future__ import annotations

from torch import Tensor, nn


class TanhMLP(nn.Module):
    """``Flatten -> Linear(in_features, hidden) -> tanh -> Linear(hidden, num_classes)``.

    fedleak passes ``in_features`` and ``num_classes`` from the data set; ``hidden`` is a
    setting (``+model.args.hidden=128``). tanh has no flat region, so ``dL/db1[j]`` is
    non-zero for every neuron ``j``: each hidden neuron gives one estimate of the input to
    an attack on the first layer.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.hidden = nn.Linear(in_features, hidden)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class scores (logits) of a batch ``x`` of shape ``(B, ...)``."""
        return self.out(self.hidden(self.flatten(x)).tanh())
