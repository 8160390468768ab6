"""What the report draws and concludes: exact-recovery band, visible curves, grids, LPIPS,
the leakage-and-accuracy figure, and defenses that did not protect."""

from __future__ import annotations

import math
import socket
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from fedleak.simulator.config.schema import ExperimentConfig
from fedleak.simulator.metrics.lpips import ALEXNET_FILE, LpipsUnavailableError, lpips_scorer
from fedleak.simulator.record_keys import AGGREGATE_NODE_ID
from fedleak.simulator.report.build import build_report, summarise
from fedleak.simulator.report.findings import client_leakage, defended_leaks
from fedleak.simulator.report.images import grid_columns, write_round_grid
from fedleak.simulator.report.plots import (
    EXACT_PSNR_DB,
    LEAKAGE_METRICS,
    exact_band,
    leakage_figure,
    learning_figure,
)
from fedleak.simulator.runtime.audit import AuditStore, GroundTruth
from fedleak.simulator.runtime.results import LeakageRecord, RunPaths

METRICS = {m.key: m for m in LEAKAGE_METRICS}


def _ok(r: int, node: int, attack: str, psnr: float, **extra: Any) -> LeakageRecord:
    values: dict[str, Any] = {"ssim_mean": 0.9, "avd_mean": 0.1, "recovery_rate": 1.0}
    values.update(extra)
    return LeakageRecord(r, node, attack, "ok", psnr_mean=psnr, psnr_min=psnr, **values)


def test_exact_recovery_is_a_band_that_does_not_squash_the_axis() -> None:
    assert exact_band(np.array([138.0, 300.0, 20.0])).tolist() == [64.0, 64.0, 20.0]
    rows = [_ok(1, 1, "analytic", 138.0), _ok(1, 1, "ig", 20.0), _ok(2, 1, "ig", 25.0)]
    fig = leakage_figure(rows, METRICS["psnr"])
    assert fig is not None
    (ax,) = fig.axes
    assert ax.get_ylim()[1] == pytest.approx(EXACT_PSNR_DB + 8.0)  # not 138 + margin
    drawn = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    assert list(drawn["analytic"]) == [64.0] and list(drawn["ig"]) == [20.0, 25.0]
    assert any("exact recovery" in t.get_text() for t in ax.texts)


def test_coinciding_curves_stay_visible() -> None:
    rows = [_ok(r, 1, a, 50.0) for r in (1, 2) for a in ("analytic", "inverting_gradients")]
    fig = leakage_figure(rows, METRICS["recovery"])
    assert fig is not None
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    first, second = lines["analytic"], lines["inverting_gradients"]
    assert list(first.get_ydata()) == list(second.get_ydata()) == [1.0, 1.0]
    assert not np.allclose(first.get_xdata(), second.get_xdata())  # shifted sideways
    assert first.get_marker() != second.get_marker()
    assert first.get_linestyle() != second.get_linestyle()


def test_accuracy_and_leakage_share_one_round_axis_per_attack() -> None:
    rows = [_ok(r, 1, a, 10.0 * r) for r in (1, 2, 3) for a in ("analytic", "dlg")]
    training = [{"round": r, "test_accuracy": 0.2 * r} for r in range(4)]
    fig = learning_figure(rows, training)
    assert fig is not None
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["analytic", "dlg"]
    for panel in panels:
        (twin,) = [ax for ax in fig.axes if ax is not panel and ax.bbox.bounds == panel.bbox.bounds]
        accuracy = twin.get_lines()[0]
        assert list(accuracy.get_xdata()) == [0, 1, 2, 3]
        assert list(panel.get_lines()[0].get_ydata()) == [10.0, 20.0, 30.0]
    assert learning_figure(rows, []) is None and learning_figure([], training) is None


def _audited_run(root: Path) -> tuple[RunPaths, np.ndarray]:
    paths = RunPaths(root)
    truth = np.random.default_rng(0).random((2, 1, 8, 8))
    AuditStore(paths.audit).write(1, 7, GroundTruth(truth, np.array([1, 2]), partition_id=3))
    noisy = truth[::-1] + 0.01  # reversed order: matching must pair them back
    for attack, recon in (("analytic", truth), ("ig", noisy)):
        file = paths.reconstruction_file(1, 7, attack)
        file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(file, inputs=recon, labels=np.array([1, 2]))
    return paths, truth


def test_grids_name_the_client_and_give_each_image_its_psnr(tmp_path: Path) -> None:
    paths, _ = _audited_run(tmp_path)
    rows = [_ok(1, 7, "analytic", 300.0, client=3), _ok(1, 7, "ig", 40.0, client=3)]
    columns, attacks = grid_columns(paths, 1, rows)
    assert attacks == ["analytic", "ig"] and [c.owner for c in columns] == ["client 3"] * 2
    for column in columns:
        assert column.recons["analytic"][1] == 300.0  # bit-exact: the PSNR cap
        assert column.recons["ig"][1] == pytest.approx(40.0)  # an error of 0.01 everywhere
    assert write_round_grid(paths, 1, rows) == paths.grids / "round_0001.png"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every way torch or Python could reach the network raises and is recorded."""
    attempts: list[str] = []

    def refuse(name: str) -> Any:
        def fail(*args: object, **kwargs: object) -> None:
            attempts.append(name)
            raise AssertionError(f"network access attempted: {name}")

        return fail

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse("load_state_dict_from_url"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse("download_url_to_file"))
    monkeypatch.setattr(urllib.request, "urlopen", refuse("urlopen"))
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    return attempts


def test_lpips_without_weights_says_where_it_looked_and_downloads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(LpipsUnavailableError) as error:
        lpips_scorer(None)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / ALEXNET_FILE
    assert str(error.value).startswith(f"LPIPS not computed: no weights at {expected}")
    with pytest.raises(LpipsUnavailableError, match=str(tmp_path / "elsewhere")):
        lpips_scorer(str(tmp_path / "elsewhere.pth"))
    assert no_network == []


def test_lpips_from_local_weights_scores_each_row(tmp_path: Path, no_network: list[str]) -> None:
    import torchvision

    weights = tmp_path / "weights"
    weights.mkdir()  # a folder holding the checkpoint is accepted too
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), weights / ALEXNET_FILE)
    score = lpips_scorer(str(weights))
    images = np.random.default_rng(1).random((3, 1, 8, 8))
    assert np.allclose(score(images, images), 0.0)
    assert (score(images, images[[1, 2, 0]]) > 0).all()

    paths, _ = _audited_run(tmp_path / "run")
    config = ExperimentConfig().to_dict()
    config["report"] = {"lpips_weights": str(weights / ALEXNET_FILE)}
    paths.config.write_text(yaml.safe_dump(config))
    rows = [_ok(1, 7, "analytic", 300.0, client=3), _ok(1, 7, "ig", 40.0, client=3)]
    paths.leakage_jsonl.write_text("".join(r.to_json() + "\n" for r in rows))
    text = build_report(paths)
    assert "LPIPS not computed" not in text
    by_attack = {row["attack"]: row["lpips"] for row in summarise(rows, {})}
    assert all(math.isnan(v) for v in by_attack.values())  # nothing passed: no value
    csv = paths.summary_csv.read_text().splitlines()
    lpips = [float(line.split(",")[csv[0].split(",").index("lpips")]) for line in csv[1:]]
    assert lpips[0] == pytest.approx(0.0, abs=1e-6) and lpips[1] > 0  # exact, then noisy
    assert no_network == []


def _aggregate_row(recovery: float) -> LeakageRecord:
    details = {"target": "secure aggregate of 4 clients", "aggregated_clients": 4}
    return _ok(
        2,
        AGGREGATE_NODE_ID,
        "inverting_gradients",
        74.5,
        recovery_rate=recovery,
        num_truth=4,
        details=details,
    )


def test_a_defended_run_whose_attacks_still_recover_data_says_so() -> None:
    config = ExperimentConfig().to_dict()
    config["defense"]["secagg"]["enabled"] = True
    (line,) = defended_leaks(config, [_aggregate_row(1.0)])
    assert line.startswith(
        "secure aggregation (3 shares, threshold 2) did not protect the data: the aggregate "
        "of 4 clients was reconstructed at 74.5 dB in round 2 (inverting_gradients, 4 of 4 "
        "samples recovered)"
    )
    assert defended_leaks(config, [_aggregate_row(0.25)]) == []  # 1 of 4: not reconstructed
    undefended = ExperimentConfig().to_dict()
    assert defended_leaks(undefended, [_aggregate_row(1.0)]) == []  # nothing to judge
    config["defense"]["dp"] |= {"enabled": True, "noise": 0.01, "clip": 0.1}
    (line,) = defended_leaks(config, [_aggregate_row(1.0)])
    assert line.startswith("local DP (noise 0.01, clip 0.1) + secure aggregation (3 shares")


def test_client_leakage_puts_the_client_that_leaks_most_first() -> None:
    rows = [
        _ok(1, 10, "analytic", 20.0, client=0),
        _ok(1, 10, "ig", 25.0, client=0),
        _ok(1, 11, "analytic", 90.0, client=1),
        _ok(2, 11, "analytic", 15.0, client=1),
        _ok(2, 10, "analytic", math.nan, client=0),
    ]
    rounds, clients = client_leakage(rows)
    assert rounds == [1, 2]
    assert [c.owner for c in clients] == ["client 1", "client 0"]
    assert (clients[0].peak_psnr, clients[0].peak_round) == (90.0, 1)
    assert clients[1].by_round == {1: (25.0, "ig")}  # best attack per round; NaN skipped
