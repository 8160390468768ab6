"""fedleak's Flower ClientApp: local training and, in evaluation mode, the audit record."""

from fedleak import simulator  # noqa: F401  (makes torchvision importable in this process first)
