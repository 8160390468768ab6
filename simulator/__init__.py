"""fedleak's experiment layer: config, models, data, metrics, runners, reports."""

from fedleak.simulator.torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()
