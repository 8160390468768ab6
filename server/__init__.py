"""fedleak's Flower ServerApp: the curious strategy, the attack pool, the leakage recorder."""

import simulator  # noqa: F401  (makes torchvision importable in this process first)
