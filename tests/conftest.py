"""Suite-wide settings."""

import os

# Ray warns on every init that a future release changes how it treats CUDA_VISIBLE_DEVICES.
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
