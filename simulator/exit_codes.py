"""Process exit codes of the ``fedleak`` CLI (one per kind of failure, as Flower's ExitCode)."""

OK = 0
RUN_FAILED = 1
CONFIG_ERROR = 2
DATASET_UNAVAILABLE = 3
RUN_DIR_INVALID = 4
CUDA_UNAVAILABLE = 5
RAY_UNREACHABLE = 6
MODEL_WEIGHTS_MISSING = 7
"""``model.weights`` is missing, unreadable, not a state dict, or does not fit the model."""
TOO_FEW_VALID_REPLIES = 8
DEPLOY_ERROR = 9
"""`fedleak deploy`: docker or compose missing, daemon down, stack not up, run not completed."""
PATH_UNUSABLE = 10
"""``output_dir`` cannot be created or written, or ``dataset.data_dir`` is not a directory."""
INTERRUPTED = 130
"""Ctrl-C during a sweep (128 + SIGINT, the shell's convention); what finished is summarised."""
