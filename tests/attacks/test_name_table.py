"""The one registry type: one rule, errors that list the accepted names, copies for tests."""

from __future__ import annotations

import pytest

from fedleak.attacks.name_table import Registry


def test_a_name_is_registered_once() -> None:
    table: Registry[int] = Registry("widget")
    assert table.register("a", 1) == 1
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        table.register("a", 2)
    assert table.get("a") == 1


def test_erroneous_unknown_name_lists_the_accepted_ones() -> None:
    table: Registry[int] = Registry("widget", hint="(or an import path)")
    table.register("b", 2)
    table.register("a", 1)
    with pytest.raises(ValueError, match=r"unknown widget 'c'; available: \['a', 'b'\] \(or an"):
        table.get("c")
    assert table.names() == ["a", "b"] and "a" in table and "c" not in table
    assert table.items() == [("a", 1), ("b", 2)]


def test_a_copy_is_independent() -> None:
    table: Registry[int] = Registry("widget")
    table.register("a", 1)
    twin = table.copy()
    twin.register("b", 2)
    assert table.names() == ["a"] and twin.names() == ["a", "b"]


def test_every_table_of_fedleak_is_a_registry() -> None:
    from fedleak.attacks.registry import ATTACKS
    from fedleak.clients.defenses import CLIENT_DEFENSES
    from fedleak.simulator.config.choices import POOL_BACKENDS
    from fedleak.simulator.config.schema import UPDATE_DEFENSES
    from fedleak.simulator.data.datasets import DATASETS
    from fedleak.simulator.defenses import DEFENSES
    from fedleak.simulator.models.architectures import MODELS

    tables = (ATTACKS, MODELS, DATASETS, POOL_BACKENDS, DEFENSES, CLIENT_DEFENSES)
    assert all(isinstance(t, Registry) for t in tables)
    # every own update defense but SecAgg+ (a ClientApp mod of its own) is a registered class
    assert set(CLIENT_DEFENSES.names()) == set(UPDATE_DEFENSES) - {"secagg"}
    assert all(CLIENT_DEFENSES.get(n).name == n for n in CLIENT_DEFENSES.names())
    # each attack's name is written once: the class's name is its registry name
    own = [n for n in ATTACKS.names() if ATTACKS.get(n).__module__.startswith("fedleak.attacks.")]
    assert own and all(ATTACKS.get(n).name == n for n in own)
