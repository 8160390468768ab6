"""The HTML report of a small run renders in headless Chromium: plots and galleries decode,
and the summary box, the per-client table and the leakage-and-accuracy figure are there.

The setup installs Debian's ``chromium`` package with apt when it is missing (the test
skips, saying why, only where apt cannot install it). Chromium opens the page from disk
with every network path closed, dumps the DOM after ``load`` (where the page's own script
counts decoded images) and takes a screenshot, which must not be blank.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

SMALL_RUN = (
    "federation.rounds=2",
    "federation.num_clients=2",
    "pool=inprocess",
    "attack=analytic_ig",
    "attack.params.inverting_gradients.iterations=50",
)
RUN_NAME = "c2-r2-analytic+inverting_gradients"  # attack=analytic_ig differs from the default
OFFLINE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--metrics-recording-only",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: nothing can be fetched
    "--proxy-server=127.0.0.1:9",
)


def _installed() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _apt_install() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of the chromium binary, installed from Debian's archive when missing."""
    found = _installed()
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("chromium is not installed and apt-get is unavailable or not root")
    start = time.monotonic()
    proc = _apt_install()
    if proc.returncode != 0:  # stale or missing package lists
        subprocess.run(["apt-get", "update"], capture_output=True, timeout=300)
        proc = _apt_install()
    found = _installed()
    if proc.returncode != 0 or not found:
        pytest.skip(f"apt-get could not install chromium: {(proc.stderr or proc.stdout)[-500:]}")
    print(f"installed chromium in {time.monotonic() - start:.0f} s", file=sys.stderr)
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``report.html`` of a small real run (2 rounds, 2 clients)."""
    out = tmp_path_factory.mktemp("runs")
    proc = subprocess.run(
        [sys.executable, "-m", "fedleak.simulator.cli", "run", f"output_dir={out}", *SMALL_RUN],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = (out / RUN_NAME).iterdir()  # named after what differs from the default
    return run_dir / "report.html"


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, *OFFLINE_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(profile)},
    )


def test_report_renders_its_plots_and_galleries(
    chromium: str, report: Path, tmp_path: Path
) -> None:
    dom = _chromium(chromium, tmp_path / "profile", "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body is not None, dom.stdout[:2000]
    counts = dict(re.findall(r'data-images-(loaded|total)="(\d+)"', body.group(0)))
    assert counts.keys() == {"loaded", "total"}, body.group(0)
    # 4 leakage curves + accuracy + leakage-and-accuracy + a grid per round (2), all decoded
    assert int(counts["loaded"]) == int(counts["total"]) == 8
    sections = ("summary", "clients", "learning", "leakage", "accuracy", "gallery")
    for section in (*sections, "threat-model", "config"):
        assert f'id="{section}"' in dom.stdout
    assert f"<h1>fedleak report: {RUN_NAME}</h1>" in dom.stdout


def _section(dom: str, key: str) -> str:
    start = dom.index(f'<section id="{key}">')
    return dom[start : dom.index("</section>", start)]


def test_rendered_summary_box_carries_the_run_settings(
    chromium: str, report: Path, tmp_path: Path
) -> None:
    dom = _chromium(chromium, tmp_path / "profile", "--dump-dom", report.as_uri()).stdout
    box = _section(dom, "summary")
    facts = dict(re.findall(r"<tr><th>([^<]*)</th><td>([^<]*)</td></tr>", box))
    assert facts["experiment"] == RUN_NAME and facts["data set"] == "digits"
    assert facts["model"] == "mlp (kaiming_uniform init)"  # the default mlp is He-initialised
    assert facts["training"] == "fedsgd: one gradient step per round"
    assert facts["batch size B"] == "1" and facts["learning rate"] == "0.3"
    assert facts["clients x rounds"] == "2 x 2" and facts["seed"] == "0"
    assert facts["defenses"] == "none" and facts["epsilon"] == "- (no differential privacy)"
    assert re.fullmatch(
        r"analytic \(\S+ s per update\); inverting_gradients \(effort default, iterations 50, "
        r"time_budget_s 60\.0, restarts 1; \S+ s per update\)",
        facts["attacks"],
    ), facts["attacks"]
    assert facts["leakage rows"] == "8 (8 ok)"
    assert re.fullmatch(r"0\.\d{3}", facts["final test accuracy"])


def test_rendered_per_client_table_and_leakage_accuracy_figure(
    chromium: str, report: Path, tmp_path: Path
) -> None:
    dom = _chromium(chromium, tmp_path / "profile", "--dump-dom", report.as_uri()).stdout
    table = _section(dom, "clients")
    heads = re.findall(r"<th[^>]*>([^<]*)</th>", table)
    assert heads == ["client", "round 1", "round 2", "peak PSNR", "peak round", "by"]
    rows = re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)[1:]
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in rows]
    assert sorted(row[0] for row in cells) == ["client 0", "client 1"]
    for row in cells:  # analytic recovers a B=1 FedSGD update exactly: > 100 dB each round
        assert float(row[1]) > 100 and float(row[2]) > 100 and row[5] == "analytic"
    learning = _section(dom, "learning")
    assert 'alt="Leakage and test accuracy on one round axis, per attack"' in learning
    assert learning.count("<img") == 1


def _learning_png(dom: str) -> bytes:
    """The PNG of the leakage-and-accuracy figure as the rendered page holds it."""
    src = re.search(r'<img[^>]*src="data:image/png;base64,([^"]+)"', _section(dom, "learning"))
    assert src is not None, _section(dom, "learning")[:2000]
    return base64.b64decode(src.group(1))


def test_rendered_leakage_accuracy_figure_has_a_panel_per_attack(
    chromium: str, report: Path, tmp_path: Path
) -> None:
    """Chromium draws the figure alone: two panels side by side (analytic, inverting
    gradients), each with the PSNR curve (matplotlib blue) and the black accuracy curve."""
    dom = _chromium(chromium, tmp_path / "profile", "--dump-dom", report.as_uri()).stdout
    png = _learning_png(dom)
    with Image.open(io.BytesIO(png)) as image:
        width, height = image.size
    assert 2.2 < width / height < 3.4, (width, height)  # 2 panels of 4.6 x 3.3 inches
    page = tmp_path / "figure.html"
    page.write_text(
        '<html><body style="margin:0;background:#fff"><img src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}" width="{width}" height="{height}"></body></html>'
    )
    shot = tmp_path / "figure.png"
    proc = _chromium(
        chromium,
        tmp_path / "profile",
        f"--screenshot={shot}",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
        page.as_uri(),
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    with Image.open(shot) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=float)
    for panel in (rgb[:, : rgb.shape[1] // 2], rgb[:, rgb.shape[1] // 2 :]):
        blue = np.abs(panel - (31, 119, 180)).max(axis=2) < 40  # the PSNR curve and band
        dark = panel.max(axis=2) < 60  # the accuracy curve, axes and labels
        assert blue.sum() > 200 and dark.sum() > 500, (blue.sum(), dark.sum())


def test_report_screenshot_is_not_blank(chromium: str, report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    proc = _chromium(
        chromium,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1200,3000",
        "--hide-scrollbars",
        report.as_uri(),
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    with Image.open(shot) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=float)
    assert rgb.shape[:2] == (3000, 1200)
    gray = rgb.mean(axis=2)
    assert gray.std() > 20.0
    assert (gray < 240).mean() > 0.05  # text, tables, plots and digits, not a white page
    # matplotlib's first two line colours (blue, orange) only come from the decoded plots
    blue = np.abs(rgb - (31, 119, 180)).max(axis=2) < 40
    orange = np.abs(rgb - (255, 127, 14)).max(axis=2) < 40
    assert blue.sum() > 500 and orange.sum() > 500
