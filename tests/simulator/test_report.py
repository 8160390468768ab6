"""`fedleak report` rebuilds everything from whatever rows a run left, torn last line included."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from simulator.audit import AuditStore, GroundTruth
from simulator.cli import main
from simulator.report import summarise
from simulator.results import LeakageRecord, RunPaths, read_leakage


def _row(r: int, node: int, attack: str, psnr: float, status: str = "ok") -> LeakageRecord:
    return LeakageRecord(
        round=r, node_id=node, attack=attack, status=status, psnr_mean=psnr, psnr_min=psnr
    )


def test_summary_groups_by_round_and_attack_and_ignores_failures() -> None:
    rows = summarise(
        [
            _row(1, 1, "a", 10.0),
            _row(1, 2, "a", 20.0),
            _row(1, 3, "a", math.nan, "failed"),
            _row(2, 1, "a", 30.0),
        ]
    )
    assert [(r["round"], r["updates"], r["ok"], r["failed"]) for r in rows] == [
        (1, 3, 2, 1),
        (2, 1, 1, 0),
    ]
    assert rows[0]["psnr_mean"] == 15.0 and rows[0]["psnr_min"] == 10.0


def test_report_rebuilds_from_a_killed_run(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    paths = RunPaths(tmp_path)
    truth = np.random.default_rng(0).random((1, 1, 8, 8)).astype(np.float32)
    AuditStore(paths.audit).write(1, 5, GroundTruth(truth, np.array([3])))
    recon_file = paths.reconstruction_file(1, 5, "analytic")
    recon_file.parent.mkdir(parents=True)
    np.savez(recon_file, inputs=truth, labels=np.array([3]))
    lines = [
        _row(1, 5, "analytic", 140.0).to_json(),
        _row(1, 6, "analytic", math.nan, "failed").to_json(),
    ]
    paths.leakage_jsonl.write_text(
        "\n".join(lines) + '\n{"round": 2, "node_id"'
    )  # torn by the kill

    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "analytic" in out and "140" in out
    assert len(read_leakage(paths.leakage_jsonl)) == 2
    assert paths.leakage_csv.read_text().count("\n") == 3
    assert (paths.grids / "round_0001.png").is_file()
    assert paths.summary.is_file()


def test_report_on_a_non_run_directory_fails_clearly(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["report", str(tmp_path)]) != 0
    assert "not a fedleak run directory" in capsys.readouterr().err
