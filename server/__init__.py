"""fedleak's Flower ServerApp: the curious strategy, the attack pool, the leakage recorder."""

from fedleak import simulator  # noqa: F401  (makes torchvision importable in this process first)
