"""The attack policy selects rounds and clients reproducibly."""

from __future__ import annotations

from fedleak.server.policy import AttackPolicy

NODES = list(range(100, 200))


def test_default_attacks_everything() -> None:
    assert AttackPolicy().select(3, NODES) == set(NODES)


def test_rounds_restrict_which_rounds_are_attacked() -> None:
    policy = AttackPolicy(rounds=[2, 4])
    assert policy.select(1, NODES) == set()
    assert policy.select(2, NODES) == set(NODES)


def test_fraction_is_seeded_and_varies_by_round() -> None:
    policy = AttackPolicy(client_fraction=0.1, seed=7)
    first = policy.select(1, NODES)
    assert len(first) == 10 and first <= set(NODES)
    assert first == AttackPolicy(client_fraction=0.1, seed=7).select(1, list(reversed(NODES)))
    assert first != policy.select(2, NODES)
    assert first != AttackPolicy(client_fraction=0.1, seed=8).select(1, NODES)


def test_small_fraction_still_attacks_one_client() -> None:
    assert len(AttackPolicy(client_fraction=0.01).select(1, [5, 6, 7])) == 1


def test_client_ids_filter() -> None:
    assert AttackPolicy(client_ids=[101, 150, 999]).select(1, NODES) == {101, 150}


def test_flower_sized_node_ids_survive_selection() -> None:
    """Flower's node ids are unsigned 64-bit: numpy would turn a mixed list into floats."""
    ids = [2**64 - 3, 2**63 + 11, 17, 2**40 + 1, 5, 2**62]
    chosen = AttackPolicy(client_fraction=0.5, seed=1).select(1, ids)
    assert len(chosen) == 3 and chosen <= set(ids)
    assert all(isinstance(i, int) for i in chosen)
