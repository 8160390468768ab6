"""Secure aggregation (Flower's SecAgg+): only the aggregate is attacked, training is unchanged."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common import Code, FitIns, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

from fedleak.clients.app import app as client_app
from fedleak.clients.secagg_mods import fedleak_to_fitres, fitins_to_fedleak, secagg_mod
from fedleak.server.federation import run_federation
from fedleak.server.secagg_federation import run_secagg_federation, secagg_workflow
from fedleak.simulator import record_keys as keys
from fedleak.simulator.config.schema import (
    AttackSelection,
    ConfigError,
    DefenseConfig,
    ExperimentConfig,
    PoolConfig,
    PruneSettings,
    SecAggSettings,
    experiment_from_mapping,
)
from fedleak.simulator.runtime.audit import AuditStore
from fedleak.simulator.runtime.experiment_data import initial_model
from fedleak.simulator.runtime.results import LeakageRecord, RunPaths, read_leakage
from fedleak.simulator.runtime.resume import prepare_resume
from tests.flower_harness import LocalGrid
from tests.server.conftest import model_spec

CLIENTS, ROUNDS, BATCH = 3, 2, 2


class SerialisingGrid(LocalGrid):
    """LocalGrid whose nodes get their own copy of each message, as over a network.

    SecAgg+'s server sends one RecordDict to every node and its client mod pops the stage
    key from it: in-process, the first node would take it from all the others.
    """

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return super().send_and_receive([copy.deepcopy(m) for m in messages], timeout=timeout)


def _experiment(cfg: ExperimentConfig, secagg: bool) -> ExperimentConfig:
    return replace(
        cfg,
        federation=replace(cfg.federation, num_clients=CLIENTS, rounds=ROUNDS, batch_size=BATCH),
        attack=AttackSelection(names=["analytic", "spear"]),
        defense=DefenseConfig(secagg=SecAggSettings(enabled=secagg)),
    )


def _run(cfg: ExperimentConfig, root: Path) -> RunPaths:
    paths = RunPaths(root)
    paths.root.mkdir(parents=True)
    run_federation(SerialisingGrid(client_app, CLIENTS), cfg, paths)
    return paths


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunPaths, RunPaths]:
    """The same experiment with and without SecAgg+ (in-process pool, LocalGrid)."""
    out = tmp_path_factory.mktemp("secagg")
    base = replace(ExperimentConfig(output_dir=str(out)), pool=PoolConfig(backend="inprocess"))
    plain = _run(_experiment(base, secagg=False), out / "plain")
    secure = _run(_experiment(base, secagg=True), out / "secagg")
    return plain, secure


def _rows(paths: RunPaths) -> list[LeakageRecord]:
    return read_leakage(paths.leakage_jsonl)


def test_secagg_run_records_no_per_client_reconstruction(runs: tuple[RunPaths, RunPaths]) -> None:
    plain, secure = runs
    assert {r.node_id for r in _rows(plain)} - {keys.AGGREGATE_NODE_ID} != set()
    rows = _rows(secure)
    assert rows and {r.node_id for r in rows} == {keys.AGGREGATE_NODE_ID}
    assert all(r.client == -1 for r in rows)


def test_secagg_run_attacks_each_rounds_aggregate_against_all_its_samples(
    runs: tuple[RunPaths, RunPaths],
) -> None:
    _, secure = runs
    rows = _rows(secure)
    assert sorted((r.round, r.attack) for r in rows) == [
        (rnd, name) for rnd in range(1, ROUNDS + 1) for name in ("analytic", "spear")
    ]
    assert all(r.status in {"ok", "failed", "not_applicable"} for r in rows)
    assert all(r.details["target"] == f"secure aggregate of {CLIENTS} clients" for r in rows)
    measured = [r for r in rows if r.status == "ok"]
    assert measured, [r.reason for r in rows]
    assert all(r.num_truth == CLIENTS * BATCH for r in measured)
    audit = AuditStore(secure.audit)
    for rnd in range(1, ROUNDS + 1):
        union = audit.read(rnd, keys.AGGREGATE_NODE_ID)
        nodes = sorted(p.stem for p in (secure.audit / f"round_{rnd:04d}").glob("node_*.npz"))
        clients = [audit.read(rnd, int(n.removeprefix("node_"))) for n in nodes if n != "node_0"]
        assert len(clients) == CLIENTS
        np.testing.assert_array_equal(union.inputs, np.concatenate([c.inputs for c in clients]))


def test_secagg_trains_the_model_plain_fedavg_trains(runs: tuple[RunPaths, RunPaths]) -> None:
    plain, secure = runs
    expected = torch.load(Path(plain.root) / "final_model.pt")
    got = torch.load(Path(secure.root) / "final_model.pt")
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert got[name].dtype == value.dtype
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-4)  # SecAgg+ quantises
    plain_log = [json.loads(x) for x in plain.training_jsonl.read_text().splitlines()]
    secure_log = [json.loads(x) for x in secure.training_jsonl.read_text().splitlines()]
    assert [r["round"] for r in secure_log] == [r["round"] for r in plain_log] == [0, 1, 2]
    for a, b in zip(plain_log[1:], secure_log[1:], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-6)


def test_client_defenses_act_before_secagg_masks(tmp_path: Path) -> None:
    """Pruning 90% of the update, then SecAgg+, trains what pruning alone trains."""
    base = replace(
        ExperimentConfig(output_dir=str(tmp_path)),
        federation=replace(ExperimentConfig().federation, num_clients=CLIENTS, rounds=1),
        attack=AttackSelection(names=["analytic"]),
        pool=PoolConfig(backend="inprocess"),
    )
    prune = PruneSettings(enabled=True, fraction=0.9)
    models = []
    for name, secagg in (("plain", False), ("secagg", True)):
        defense = DefenseConfig(prune=prune, secagg=SecAggSettings(enabled=secagg))
        paths = _run(replace(base, defense=defense), tmp_path / name)
        models.append(torch.load(Path(paths.root) / "final_model.pt"))
    initial = initial_model(model_spec(base), base.seed).state_dict()
    pruned, secure = models
    for name, value in pruned.items():
        torch.testing.assert_close(secure[name], value, rtol=0, atol=1e-4)
    changed = sum(int(((pruned[n] - initial[n]).abs() > 1e-6).sum()) for n in initial)
    assert 0 < changed <= 0.1 * CLIENTS * sum(v.numel() for v in initial.values())


def _fit_message(arrays: dict[str, np.ndarray], config: dict[str, str | int]) -> RecordDict:
    fitins = FitIns(ndarrays_to_parameters(list(arrays.values())), config)  # type: ignore[arg-type]
    return compat.fitins_to_recorddict(fitins, keep_input=True)


def test_shim_turns_legacy_fitins_into_fedleak_records_and_the_reply_into_fitres() -> None:
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2, np.float32)}
    config = {keys.ARRAY_NAMES: json.dumps(list(arrays)), keys.SERVER_ROUND: 3}
    content = fitins_to_fedleak(_fit_message(arrays, config))
    record = content[keys.ARRAYS]
    assert isinstance(record, ArrayRecord) and list(record) == ["w", "b"]
    np.testing.assert_array_equal(record["w"].numpy(), arrays["w"])
    assert content[keys.CONFIG][keys.SERVER_ROUND] == 3  # type: ignore[index]

    reply = RecordDict(
        {
            keys.ARRAYS: ArrayRecord({k: Array(v + 1) for k, v in arrays.items()}),
            keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 4, keys.TRAIN_LOSS: 0.5}),
        }
    )
    fitres = compat.recorddict_to_fitres(fedleak_to_fitres(reply), keep_input=True)
    assert fitres.status.code == Code.OK and fitres.num_examples == 4
    assert fitres.metrics == {keys.TRAIN_LOSS: 0.5}
    for got, want in zip(parameters_to_ndarrays(fitres.parameters), arrays.values(), strict=True):
        np.testing.assert_array_equal(got, want + 1)


def test_erroneous_fitins_without_array_names_is_refused() -> None:
    with pytest.raises(KeyError, match=keys.ARRAY_NAMES):
        fitins_to_fedleak(_fit_message({"w": np.zeros(2)}, {keys.SERVER_ROUND: 1}))


def test_secagg_mod_passes_other_messages_through_untouched() -> None:
    content = RecordDict({keys.CONFIG: ConfigRecord({keys.SERVER_ROUND: 1})})
    msg = Message(content, dst_node_id=1000, message_type="train")
    context = Context(run_id=1, node_id=1000, node_config={}, state=RecordDict(), run_config={})
    seen: list[Message] = []

    def call_next(m: Message, _c: Context) -> Message:
        seen.append(m)
        return m

    assert secagg_mod(msg, context, call_next) is msg and seen == [msg]


def test_secagg_settings_map_to_flowers_workflow() -> None:
    every = secagg_workflow(SecAggSettings(num_shares=4, reconstruction_threshold=2), 4, 1.0)
    assert every.num_shares == 1.0 and every.reconstruction_threshold == 0.5
    some = secagg_workflow(SecAggSettings(num_shares=3, reconstruction_threshold=3), 10, 8.0)
    assert some.num_shares == 3 and some.reconstruction_threshold == 1.0
    assert some.max_weight == 8.0


def test_erroneous_two_shares_of_more_clients_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"defense.secagg.num_shares: Flower's SecAgg\+"):
        experiment_from_mapping(
            {
                "federation": {"num_clients": 4},
                "defense": {"secagg": {"enabled": True, "num_shares": 2}},
            }
        )


def test_erroneous_resume_of_a_secagg_run_is_refused(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path)
    paths.config.write_text("defense:\n  secagg:\n    enabled: true\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot be resumed"):
        prepare_resume(tmp_path)
    with pytest.raises(RuntimeError, match="cannot be resumed"):
        run_secagg_federation(SerialisingGrid(client_app, 2), ExperimentConfig(), paths, 2)
