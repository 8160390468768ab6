"""The ClientApp applies the run's defenses to the update it sends, and only to that.

Each test sends one real train message through ``fedleak.clients.app:app`` (with its mods) and
compares the reply's update with the undefended update of the same seeded batch.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, Message, RecordDict

from fedleak.clients.app import app
from fedleak.simulator import record_keys as keys
from fedleak.simulator.config.schema import (
    DefenseConfig,
    DpSettings,
    ExperimentConfig,
    FederationConfig,
    PruneSettings,
    QuantizeSettings,
)
from tests.flower_harness import LocalGrid
from tests.server.conftest import initial_arrays, train_config


def _update(cfg: ExperimentConfig, tmp_path: Path) -> list[np.ndarray]:
    """``reply - global`` for partition 0 of ``cfg``, round 1."""
    grid = LocalGrid(app, num_nodes=2)
    sent = initial_arrays(cfg)
    config = train_config(cfg, tmp_path / "audit")
    config[keys.SERVER_ROUND] = 1
    content = RecordDict({keys.ARRAYS: sent, keys.CONFIG: config})
    message = Message(content=content, dst_node_id=1000, message_type="train")
    (reply,) = grid.send_and_receive([message])
    received: ArrayRecord = reply.content[keys.ARRAYS]  # type: ignore[assignment]
    return [received[name].numpy() - sent[name].numpy() for name in sent]


def _flat(update: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([u.ravel() for u in update])


@pytest.fixture
def base(tmp_path: Path) -> ExperimentConfig:
    return ExperimentConfig(
        output_dir=str(tmp_path), federation=FederationConfig(num_clients=2, batch_size=4, lr=1.0)
    )


def test_no_defense_sends_the_plain_update(base: ExperimentConfig, tmp_path: Path) -> None:
    first, second = _update(base, tmp_path), _update(base, tmp_path)
    assert np.linalg.norm(_flat(first)) > 0.1
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_prune_zeroes_the_smallest_entries_of_every_tensor(
    base: ExperimentConfig, tmp_path: Path
) -> None:
    plain = _update(base, tmp_path)
    cfg = replace(base, defense=DefenseConfig(prune=PruneSettings(enabled=True, fraction=0.75)))
    pruned = _update(cfg, tmp_path)
    for p, u in zip(pruned, plain, strict=True):
        kept = p != 0
        assert kept.sum() <= int(np.ceil(0.25 * u.size))
        np.testing.assert_allclose(p[kept], u[kept], atol=1e-6)


def test_dp_clips_to_the_norm_and_adds_noise_of_std_sigma_times_clip(
    base: ExperimentConfig, tmp_path: Path
) -> None:
    plain = _flat(_update(base, tmp_path))
    clip = 0.1 * float(np.linalg.norm(plain))
    clipped_only = replace(
        base, defense=DefenseConfig(dp=DpSettings(enabled=True, clip=clip, noise=0.0))
    )
    clipped = _flat(_update(clipped_only, tmp_path))
    assert np.linalg.norm(clipped) == pytest.approx(clip, rel=1e-4)
    np.testing.assert_allclose(clipped, plain * clip / np.linalg.norm(plain), atol=1e-6)

    noisy_cfg = replace(
        base, defense=DefenseConfig(dp=DpSettings(enabled=True, clip=clip, noise=0.5))
    )
    noisy = _flat(_update(noisy_cfg, tmp_path))
    assert np.std(noisy - clipped) == pytest.approx(0.5 * clip, rel=0.05)
    again = _flat(_update(noisy_cfg, tmp_path))
    assert np.array_equal(noisy, again), "the noise must be seeded by the run"


def test_dp_leaves_numpys_global_generator_as_it_was(
    base: ExperimentConfig, tmp_path: Path
) -> None:
    cfg = replace(base, defense=DefenseConfig(dp=DpSettings(enabled=True, noise=1.0)))
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    _update(cfg, tmp_path)
    assert np.random.random() == expected


def test_quantize_sends_at_most_2_to_the_bits_values_per_tensor(
    base: ExperimentConfig, tmp_path: Path
) -> None:
    cfg = replace(base, defense=DefenseConfig(quantize=QuantizeSettings(enabled=True, bits=2)))
    for tensor in _update(cfg, tmp_path):
        assert len(np.unique(np.round(tensor, 6))) <= 4


def test_defenses_compose_in_order_prune_then_dp(base: ExperimentConfig, tmp_path: Path) -> None:
    plain = _update(base, tmp_path)
    pruned = _flat([np.where(np.abs(u) >= np.quantile(np.abs(u), 0.5), u, 0) for u in plain])
    clip = 0.5 * float(np.linalg.norm(pruned))
    cfg = replace(
        base,
        defense=DefenseConfig(
            prune=PruneSettings(enabled=True, fraction=0.5),
            dp=DpSettings(enabled=True, clip=clip, noise=0.0),
        ),
    )
    both = _flat(_update(cfg, tmp_path))
    np.testing.assert_allclose(both, pruned * clip / np.linalg.norm(pruned), atol=1e-6)
