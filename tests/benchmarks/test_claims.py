"""Benchmarks check each printed claim the way it is stated, and --help shows every default."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.dp_leakage import leakage_claim
from benchmarks.gradient_mixing import claims

ROOT = Path(__file__).resolve().parents[2]


def test_a_tie_holds_where_the_claim_is_no_more_than() -> None:
    everything = dict.fromkeys(
        ["CE, random labels", "CE, equal labels", "MSE, random labels", "MSE, equal labels"], 1.0
    )
    lines, holds = claims(everything)
    assert holds and all("1.00 <= 1.00: holds (a tie: no reduction measured)" in x for x in lines)
    lines, holds = claims(everything | {"CE, equal labels": 0.25, "MSE, equal labels": 0.996})
    assert holds and "0.25 <= 1.00: holds" in lines[0]  # 0.996 prints as 1.00: a tie
    lines, holds = claims(everything | {"CE, random labels": 0.5})
    assert not holds and lines[0].endswith("1.00 <= 0.50: does not hold")


def test_leakage_trend_holds_for_any_number_of_levels_from_two() -> None:
    line, holds = leakage_claim([66.6, 27.0, 6.4])  # the numbers, 3 levels
    assert holds
    assert line == (
        "leakage decreases monotonically over 3 noise levels "
        "(66.6 -> 27.0 -> 6.4 dB as noise rises): True"
    )
    assert leakage_claim([30.0, 20.0])[1]
    assert not leakage_claim([30.0, 30.0])[1]  # 'decreases': a tie is no decrease
    assert not leakage_claim([30.0, 40.0, 10.0])[1]
    assert not leakage_claim([30.0, math.nan])[1]
    assert not leakage_claim([30.0])[1]


@pytest.mark.parametrize("script", ["gradient_mixing.py", "dp_leakage.py"])
def test_help_shows_every_default(script: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    options = [line for line in proc.stdout.splitlines() if line.strip().startswith("--")]
    flags = [line.split()[0] for line in options]
    assert len(flags) >= 7
    help_text = " ".join(proc.stdout.split())
    assert help_text.count("(default:") == len(flags), proc.stdout


def test_dp_leakage_refuses_a_single_noise_level() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dp_leakage.py"), "--noise", "0.1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "at least 2 distinct noise levels" in proc.stderr
