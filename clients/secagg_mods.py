"""Secure aggregation on the client: Flower's ``secaggplus_mod`` around fedleak's training.

Flower 1.41 has SecAgg+ only for its legacy workflow API. The server's
``SecAggPlusWorkflow`` sends four train messages per round, each with a ConfigRecord
``"secaggplus_configs"`` naming the stage; only the ``collect masked vectors`` stage carries the
legacy ``fitins.parameters`` / ``fitins.config`` records, and ``secaggplus_mod`` then calls
the app and reads its reply as a legacy ``FitRes`` (``fitres.*`` records) before masking it.

fedleak's ``train`` speaks the Message API (``arrays`` / ``config`` in, ``arrays`` /
``metrics`` out), so :func:`secagg_mod` puts :func:`legacy_shim_mod` between the two::

    secagg_mod -> secaggplus_mod -> legacy_shim_mod -> defense_mod -> train

The reply travels back the same way: the defenses act on the plain update, the shim turns
it into a ``FitRes``, and only then does SecAgg+ quantise and mask it (the order of
:class:`fedleak.simulator.config.schema.DefenseConfig`: defenses, then secagg). Messages without the
``"secaggplus_configs"`` record go straight to ``call_next``.
"""

from __future__ import annotations

import copy
import json

from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.app.message import make_message
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import (
    Code,
    FitRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat

from fedleak.clients.seeding import client_stream, numpy_global_seed
from fedleak.simulator import record_keys as keys
from fedleak.simulator.config.client_setup import ClientSetup

LEGACY_FIT_CONFIG = "fitins.config"
"""Record of the legacy ``FitIns.config`` (Flower's ``recorddict_compat`` naming)."""


def fitins_to_fedleak(content: RecordDict) -> RecordDict:
    """fedleak's train content (named ``arrays``, ``config``) from legacy ``fitins.*`` records.

    Legacy ``Parameters`` carry unnamed serialised arrays; the names come from the config
    entry :data:`fedleak.simulator.record_keys.ARRAY_NAMES` that the SecAgg+ server adds.

    Raises
    ------
    KeyError
        When the config lacks the array names (not a fedleak SecAgg+ server).
    ValueError
        When the number of names and arrays differ.
    """
    fitins = compat.recorddict_to_fitins(content, keep_input=True)
    if keys.ARRAY_NAMES not in fitins.config:
        raise KeyError(f"legacy fit config lacks {keys.ARRAY_NAMES!r}; is the ServerApp fedleak's?")
    names = json.loads(str(fitins.config[keys.ARRAY_NAMES]))
    values = parameters_to_ndarrays(fitins.parameters)
    if len(names) != len(values):
        raise ValueError(f"{len(names)} array names for {len(values)} legacy arrays")
    arrays = ArrayRecord({name: Array(value) for name, value in zip(names, values, strict=True)})
    return RecordDict({keys.ARRAYS: arrays, keys.CONFIG: ConfigRecord(dict(fitins.config))})


def fedleak_to_fitres(content: RecordDict) -> RecordDict:
    """Legacy ``fitres.*`` records (status OK) from fedleak's train reply.

    The arrays keep the reply's order (the state dict's, as the server's array names);
    ``num-examples`` becomes ``FitRes.num_examples``, every other metric a fit metric.
    """
    arrays = content[keys.ARRAYS]
    metrics = content[keys.METRICS]
    if not isinstance(arrays, ArrayRecord) or not isinstance(metrics, MetricRecord):
        raise TypeError("fedleak's train reply needs an ArrayRecord and a MetricRecord")
    fit_metrics = {k: v for k, v in metrics.items() if k != keys.NUM_EXAMPLES}
    fitres = FitRes(
        status=Status(Code.OK, ""),
        parameters=ndarrays_to_parameters([array.numpy() for array in arrays.values()]),
        num_examples=int(metrics[keys.NUM_EXAMPLES]),  # type: ignore[arg-type]
        metrics=fit_metrics,  # type: ignore[arg-type]
    )
    return compat.fitres_to_recorddict(fitres, keep_input=True)


def legacy_shim_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Translate legacy ``fitins`` to fedleak's records, and the reply back to ``fitres``."""
    inner = make_message(copy.copy(msg.metadata), fitins_to_fedleak(msg.content))
    reply = call_next(inner, context)
    if reply.has_error():
        return reply
    return Message(fedleak_to_fitres(reply.content), reply_to=msg)


def _quantization_seed(msg: Message, context: Context) -> int | None:
    """Seed for SecAgg+'s stochastic rounding: per (experiment seed, round, partition)."""
    config = msg.content.config_records.get(LEGACY_FIT_CONFIG)
    if config is None or keys.CLIENT_SETUP not in config or keys.SERVER_ROUND not in config:
        return None
    setup = ClientSetup.from_json(str(config[keys.CLIENT_SETUP]))
    server_round = int(config[keys.SERVER_ROUND])  # type: ignore[arg-type]
    partition = int(context.node_config.get(keys.PARTITION_ID, 0))
    return int(client_stream(setup.seed, server_round, partition, "secagg").integers(2**32))


def secagg_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """The ClientApp's outermost mod: run SecAgg+ stage messages through ``secaggplus_mod``.

    SecAgg+ quantises with numpy's global generator (stochastic rounding); as for
    ``LocalDpMod`` the generator is seeded from the experiment for the call and restored,
    so a run's aggregate is reproducible (the masks cancel exactly whatever their keys).
    """
    if msg.metadata.message_type != MessageType.TRAIN or not msg.has_content():
        return call_next(msg, context)
    stage_config = msg.content.config_records.get(RECORD_KEY_CONFIGS)
    if stage_config is None:
        return call_next(msg, context)

    def shimmed(inner: Message, ctx: Context) -> Message:
        return legacy_shim_mod(inner, ctx, call_next)

    seed = None
    if stage_config.get(Key.STAGE) == Stage.COLLECT_MASKED_VECTORS:
        seed = _quantization_seed(msg, context)
    if seed is None:
        return secaggplus_mod(msg, context, shimmed)
    with numpy_global_seed(seed):
        return secaggplus_mod(msg, context, shimmed)
