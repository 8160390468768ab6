"""Every Flower record key fedleak uses, in one place (server and clients import these)."""

ARRAYS = "arrays"
"""ArrayRecord with the model's state dict (FedAvg's default ``arrayrecord_key``)."""
CONFIG = "config"
"""ConfigRecord sent with a train message (FedAvg's default ``configrecord_key``)."""
METRICS = "metrics"
"""MetricRecord of a train reply."""
NUM_EXAMPLES = "num-examples"
"""Weighting key FedAvg reads from each reply's MetricRecord."""
TRAIN_LOSS = "train_loss"

# --- ConfigRecord entries the server sets each round (the hyperparameters it knows) ---
SERVER_ROUND = "server-round"
MODE = "mode"
LR = "lr"
BATCH_SIZE = "batch-size"
LOCAL_EPOCHS = "local-epochs"
LOCAL_STEPS = "local-steps"
LOSS = "loss"
CLIENT_SETUP = "fedleak-client-setup"
"""JSON of :class:`~fedleak.simulator.config.client_setup.ClientSetup`: data, model, seed, audit."""
ARRAY_NAMES = "fedleak-array-names"
"""JSON list of the model's state-dict names in order (secure aggregation only): Flower's
legacy ``Parameters``, which SecAgg+ uses, carry the arrays without their names."""

# --- node id of the round's aggregate (secure aggregation: the server sees nothing else) ---
AGGREGATE_NODE_ID = 0
"""Reserved ``node_id`` of rows and updates that are a round's secure aggregate; Flower never
assigns 0 to a node (its link state excludes it, as it does the SuperLink's id 1)."""

# --- node_config entries (set by Flower's simulation, or by --node-config in deployment) ---
PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"

# --- run_config entries for `flwr run` (declared in pyproject's [tool.flwr.app.config]) ---
OVERRIDES = "overrides"
"""fedleak overrides as one string: ``--run-config 'overrides="model=lenet seed=1"'``."""
EXPERIMENT_JSON = "experiment-json"
RUN_DIR = "run-dir"
START_ROUND = "start-round"

# --- environment of a `fedleak run` launch (the ServerApp runs in the launching process) ---
ENV_EXPERIMENT_JSON = "FEDLEAK_EXPERIMENT_JSON"
ENV_RUN_DIR = "FEDLEAK_RUN_DIR"
ENV_START_ROUND = "FEDLEAK_START_ROUND"

# --- Flower components (pyproject's [tool.flwr.app.components]) ---
SERVER_APP = "fedleak.server.app:app"
CLIENT_APP = "fedleak.clients.app:app"

# --- Ray custom resource reserved for attack workers in simulation ---
ATTACK_WORKER_SLOT = "fedleak_attack_worker"
