"""`fedleak report` rebuilds everything from whatever rows a run left, torn last line included."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fedleak.simulator.cli import main
from fedleak.simulator.report.build import build_report, format_table, summarise
from fedleak.simulator.runtime.audit import AuditStore, GroundTruth
from fedleak.simulator.runtime.results import (
    STATUSES,
    LeakageRecord,
    RunPaths,
    describe_statuses,
    read_leakage,
)


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


def test_every_status_has_its_own_column_in_the_table_csv_and_row_count(tmp_path: Path) -> None:
    """not_applicable, rejected, timeout and skipped are never counted as failed."""
    statuses = ["ok", "ok", "failed", "not_applicable", "not_applicable", "rejected"]
    statuses += ["timeout", "skipped", "not_applicable"]
    records = [_row(1, i, "a", 20.0 if s == "ok" else math.nan, s) for i, s in enumerate(statuses)]
    (row,) = summarise(records)
    assert {s: row[s] for s in STATUSES} == {
        "ok": 2,
        "failed": 1,
        "not_applicable": 3,
        "rejected": 1,
        "timeout": 1,
        "skipped": 1,
    }
    header, _, line = format_table([row]).splitlines()
    cells = dict(zip(header.split(), line.split(), strict=True))
    assert (cells["ok"], cells["failed"], cells["n/a"], cells["rejected"]) == ("2", "1", "3", "1")
    assert (cells["timeout"], cells["skipped"]) == ("1", "1")
    assert describe_statuses(records) == (
        "9 (2 ok, 1 failed, 3 not applicable, 1 timeout, 1 skipped, 1 rejected)"
    )
    paths = RunPaths(tmp_path)
    paths.leakage_jsonl.write_text("".join(r.to_json() + "\n" for r in records))
    build_report(paths)
    csv_header, csv_row = paths.summary_csv.read_text().splitlines()
    csv_cells = dict(zip(csv_header.split(","), csv_row.split(","), strict=True))
    assert csv_cells["not_applicable"] == "3" and csv_cells["failed"] == "1"


def test_a_status_this_version_does_not_know_keeps_its_own_column() -> None:
    (row,) = summarise([_row(1, 1, "a", math.nan, "cancelled"), _row(1, 2, "a", 9.0)])
    assert row["cancelled"] == 1 and row["failed"] == 0 and row["ok"] == 1
    assert "cancelled" in format_table([row])


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
