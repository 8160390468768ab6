"""`fedleak list attacks|models|datasets|defenses` and `fedleak --version`."""

from __future__ import annotations

from importlib.metadata import version

import pytest

import fedleak.attacks.registry
import fedleak.simulator.defenses
from fedleak.attacks import Attack
from fedleak.attacks.types import Disclosure, Reconstruction
from fedleak.simulator import exit_codes
from fedleak.simulator.cli import main
from fedleak.simulator.data.datasets import available_datasets
from fedleak.simulator.defenses import available_defenses
from fedleak.simulator.models.architectures import available_models


def _listing(kind: str, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    assert main(["list", kind]) == exit_codes.OK
    lines = capsys.readouterr().out.splitlines()
    by_name = {line.split()[0]: line for line in lines}
    assert len(by_name) == len(lines)  # one line per entry
    return by_name


class _NeedsLabels(Attack):
    """Test attack that needs the true labels."""

    requires = frozenset({Disclosure.LABELS})

    def reconstruct(self, *args: object, **kwargs: object) -> Reconstruction:
        raise NotImplementedError


def test_list_attacks_shows_the_threat_model_each_needs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = fedleak.attacks.registry
    monkeypatch.setattr(registry, "ATTACKS", registry.ATTACKS.copy())
    fedleak.attacks.registry.register_attack("test_needs_labels_listed", _NeedsLabels)
    lines = _listing("attacks", capsys)
    assert set(lines) == set(fedleak.attacks.registry.available_attacks())
    assert "a plain server's view; settings top_k" in lines["analytic"]
    assert "disclose ['labels']" in lines["test_needs_labels_listed"]
    assert "Test attack that needs the true labels." in lines["test_needs_labels_listed"]


def test_list_models_shows_the_inputs_each_takes(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _listing("models", capsys)
    assert set(lines) == set(available_models())
    assert "images (C, H, W) or flat vectors (n,)" in lines["mlp"]
    assert "images (C, H, W)" in lines["lenet"] and "flat vectors" not in lines["lenet"]


def test_list_datasets_shows_settings_and_network_needs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = _listing("datasets", capsys)
    assert set(lines) == set(available_datasets())
    assert "offline" in lines["digits"] and "network" in lines["mnist"]
    assert "dataset.args: path" in lines["huggingface"]


def test_list_defenses_shows_options_and_registered_ones(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def halve(scale: float = 0.5) -> object:
        """Test defense: scale the update."""
        return lambda delta, rng: delta * scale

    defenses = fedleak.simulator.defenses
    monkeypatch.setattr(defenses, "DEFENSES", defenses.DEFENSES.copy())
    fedleak.simulator.defenses.register_defense("test_halve_listed", halve)
    lines = _listing("defenses", capsys)
    assert {"dp", "prune", "quantize", "secagg", "none", *available_defenses()} <= set(lines)
    assert "defense=dp; settings defense.dp.{clip,noise,delta}" in lines["dp"]
    assert (
        "+defense.extra.test_halve_listed.SETTING=...; settings scale" in lines["test_halve_listed"]
    )


def test_erroneous_listing_kind_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["list", "nope"])
    assert info.value.code == 2
    assert "choose from 'attacks', 'datasets', 'defenses', 'models'" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(
        f"fedleak {version('fedleak')} (flwr {version('flwr')}, torch "
    )
