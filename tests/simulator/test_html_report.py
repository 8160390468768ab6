"""report.html is self-contained, complete and escaped; the PNG plots are valid images."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from fedleak.simulator.config.schema import ExperimentConfig
from fedleak.simulator.report.build import build_report
from fedleak.simulator.report.html_report import SECTIONS, active_defenses, render_html
from fedleak.simulator.report.plots import leakage_bands
from fedleak.simulator.runtime.audit import AuditStore, GroundTruth
from fedleak.simulator.runtime.results import LeakageRecord, RunPaths
from fedleak.simulator.runtime.setting_warnings import write_warnings

HOSTILE = '<script>alert("x")</script>'
PLOTS = (
    "leakage_psnr",
    "leakage_ssim",
    "leakage_avd",
    "leakage_recovery",
    "accuracy",
    "leakage_accuracy",
)


class _Links(HTMLParser):
    """Every URL-bearing attribute and every tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "poster", "data"):
                self.urls.append((tag, name, value or ""))


def _row(
    r: int,
    node: int,
    attack: str,
    psnr: float,
    status: str = "ok",
    reason: str = "",
    client: int = -1,
) -> LeakageRecord:
    if status != "ok":
        return LeakageRecord(round=r, node_id=node, attack=attack, status=status, reason=reason)
    return LeakageRecord(
        round=r,
        node_id=node,
        attack=attack,
        status=status,
        client=client,
        num_truth=1,
        psnr_mean=psnr,
        psnr_min=psnr,
        ssim_mean=0.9,
        avd_mean=0.1,
        recovery_rate=1.0,
    )


def _config() -> dict[str, Any]:
    """A valid resolved config with a hostile name and one defense on."""
    config = ExperimentConfig(name=HOSTILE).to_dict()
    config["defense"] = {"prune": {"enabled": True, "fraction": 0.9}, "dp": {"enabled": False}}
    config["attack"]["names"] = ["analytic", "inverting_gradients"]
    return config


def _run_dir(
    root: Path,
    rows: list[LeakageRecord],
    training: list[dict[str, object]],
    config: dict[str, Any] | None = None,
) -> RunPaths:
    paths = RunPaths(root)
    paths.config.write_text(yaml.safe_dump(config or _config()), encoding="utf-8")
    paths.leakage_jsonl.write_text("".join(r.to_json() + "\n" for r in rows))
    paths.training_jsonl.write_text("".join(json.dumps(t) + "\n" for t in training))
    return paths


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> RunPaths:
    rows = [
        _row(1, 5, "analytic", 140.0, client=0),
        _row(1, 6, "analytic", 20.0, client=1),
        _row(2, 5, "analytic", 30.0, client=0),
        _row(2, 6, "analytic", math.nan, status="failed", reason="<b>boom</b> & more"),
        _row(2, 6, "spear", math.nan, status="not_applicable", reason="no ReLU layer"),
    ]
    training: list[dict[str, object]] = [
        {"round": 0, "train_loss": None, "test_loss": 2.3, "test_accuracy": 0.1},
        {"round": 1, "train_loss": 2.2, "test_loss": 2.1, "test_accuracy": 0.4},
        {"round": 2, "train_loss": 1.9, "test_loss": 1.8, "test_accuracy": 0.6},
    ]
    paths = _run_dir(tmp_path_factory.mktemp("run"), rows, training)
    write_warnings(paths.root, ["federation.batch_size=1000 is larger than <3> partitions"])
    truth = np.random.default_rng(0).random((1, 1, 8, 8)).astype(np.float32)
    AuditStore(paths.audit).write(1, 5, GroundTruth(truth, np.array([3])))
    recon = paths.reconstruction_file(1, 5, "analytic")
    recon.parent.mkdir(parents=True)
    np.savez(recon, inputs=truth, labels=np.array([3]))
    build_report(paths)
    return paths


def _parse(paths: RunPaths) -> tuple[str, _Links]:
    page = paths.report_html.read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(page)
    return page, parser


def _decode_png(uri: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(uri[len(prefix) :], validate=True)))
    image.load()
    return image


def test_report_is_self_contained(full_run: RunPaths) -> None:
    page, parsed = _parse(full_run)
    assert "http://" not in page and "https://" not in page and "url(" not in page
    assert "link" not in parsed.tags and "iframe" not in parsed.tags
    images = [value for tag, _, value in parsed.urls if tag == "img"]
    others = [value for tag, _, value in parsed.urls if tag != "img"]
    assert all(value.startswith("#") for value in others), others  # in-page navigation only
    assert len(images) == len(PLOTS) + 1  # six plots and round 1's grid
    for uri in images:
        assert _decode_png(uri).size[0] > 100


def test_report_has_every_section_with_content(full_run: RunPaths) -> None:
    page, _ = _parse(full_run)
    for key, title in SECTIONS:
        assert f'<section id="{key}"><h2>{title}</h2>' in page
    assert "round 1: truth vs reconstruction" in page  # gallery
    assert "no image grid" in page  # round 2 has no audited reconstruction
    assert "inverting_gradients" in page and "nothing beyond a plain server" in page
    assert "defense.prune (fraction=0.9)" in page and "defense.dp" not in page
    assert "nothing: the server knows only what a plain Flower server knows" in page
    assert "0.600" in page  # final test accuracy
    assert "imagesLoaded" in page  # the counter a headless browser reads back


def test_summary_box_carries_every_setting_a_reader_needs(full_run: RunPaths) -> None:
    page, _ = _parse(full_run)
    box = page[page.index('<table class="tree" id="facts">') :]
    box = box[: box.index("</table>")]
    facts = dict(re.findall(r"<tr><th>([^<]*)</th><td>([^<]*)</td></tr>", box))
    assert facts["data set"] == "digits" and facts["model"] == "mlp"
    assert facts["training"] == "fedsgd: one gradient step per round"
    assert facts["batch size B"] == "1" and facts["learning rate"] == "0.1"
    assert facts["clients x rounds"] == "4 x 3" and facts["seed"] == "0"
    assert facts["defenses"] == "pruning (fraction 0.9)"
    assert facts["epsilon"] == "- (no differential privacy)"
    assert facts["attacks"].startswith(
        "analytic; inverting_gradients (effort default, iterations 500, time_budget_s 60.0, "
        "restarts 1"
    )
    assert "; spear (effort default, time_budget_s 30.0" in facts["attacks"]  # rows, not named
    assert facts["leakage rows"] == "5 (3 ok, 1 failed, 1 not applicable)"
    assert "<th>not applicable</th>" in page  # its own column in the per-round table


def test_report_keeps_warnings_and_says_when_a_defense_did_not_protect(
    full_run: RunPaths,
) -> None:
    page, _ = _parse(full_run)
    assert "larger than &lt;3&gt; partitions" in page  # kept from the start, escaped
    leaks = page[page.index('id="defended-leaks"') :]
    assert "pruning (fraction 0.9) did not protect the data: client 0&#x27;s update was " in leaks
    assert "reconstructed at 140.0 dB in round 1" in leaks
    summary = full_run.summary.read_text()
    assert "warning: federation.batch_size=1000" in summary and "did not protect" in summary
    assert "LPIPS not computed: no weights at" in summary


def test_per_client_table_shows_who_leaks_most_and_when(full_run: RunPaths) -> None:
    page, _ = _parse(full_run)
    client_table = page[page.index('id="client-leakage"') :]
    client_table = client_table[: client_table.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", client_table)
    heads = re.findall(r"<th>([^<]*)</th>", rows[0])
    assert heads == ["client", "round 1", "round 2", "peak PSNR", "peak round", "by"]
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in rows[1:]]
    assert cells == [
        ["client 0", "140", "30", "140", "1", "analytic"],
        ["client 1", "20", "-", "20", "1", "analytic"],
    ]


def test_report_escapes_every_text(full_run: RunPaths) -> None:
    page, _ = _parse(full_run)
    assert HOSTILE not in page and "<b>boom</b>" not in page
    assert html.escape(HOSTILE) in page and "&lt;b&gt;boom&lt;/b&gt; &amp; more" in page
    assert page.count("<script>") == 1  # the report's own image counter


def test_plots_are_valid_pngs(full_run: RunPaths) -> None:
    for name in PLOTS:
        png = full_run.plot_file(name)
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            pixels = np.asarray(image.convert("L"), dtype=float)
        assert pixels.shape[0] > 100 and pixels.std() > 10  # drawn, not blank


def test_report_without_successful_rows_or_accuracy(tmp_path: Path) -> None:
    rows = [_row(1, 5, "analytic", math.nan, status="failed", reason="no active neuron")]
    paths = _run_dir(tmp_path, rows, [])
    build_report(paths)
    page, parsed = _parse(paths)
    assert "no successful attack to plot" in page and "no accuracy recorded" in page
    assert "no active neuron" in page
    assert not any(tag == "img" for tag, _, _ in parsed.urls)
    assert not any(paths.plot_file(name).exists() for name in PLOTS)


def test_report_of_a_run_without_rows(tmp_path: Path) -> None:
    paths = _run_dir(tmp_path, [], [])
    build_report(paths)
    page, _ = _parse(paths)
    assert "no leakage rows recorded" in page and "no rounds attacked" in page


def test_a_drawing_failure_keeps_every_recorded_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import fedleak.simulator.report.html_report

    def broken(*args: object) -> None:
        raise RuntimeError("no canvas")

    monkeypatch.setattr(fedleak.simulator.report.html_report, "write_plots", broken)
    paths = _run_dir(tmp_path, [_row(1, 5, "analytic", 140.0)], [])
    table = build_report(paths)
    assert "analytic" in table and paths.summary.is_file() and paths.leakage_csv.is_file()
    assert not paths.report_html.exists()
    assert "report.html not written" in capsys.readouterr().err


def test_threat_model_names_unknown_attacks_and_disclosures(tmp_path: Path) -> None:
    config = _config()
    config["attack"] = {"names": ["no_such_attack"], "disclose": ["labels"]}
    page = render_html(_run_dir(tmp_path, [], [], config), [], [], {})
    assert "unknown (not registered here)" in page and "Privacy budget" not in page
    assert "each client&#x27;s reply" in page and "secure aggregation" not in page
    config["defense"] = {"secagg": {"enabled": True}}
    page = render_html(_run_dir(tmp_path, [], [], config), [], [], {})
    assert "only the round&#x27;s aggregate" in page and "each client&#x27;s reply" not in page
    paths = RunPaths(tmp_path)
    paths.privacy.write_text(json.dumps({"epsilon": 44111.77825757886, "delta": 1e-5}))
    page = render_html(paths, [], [], {})
    assert "<h3>Privacy budget spent (local DP)</h3>" in page and "4.411e+04" in page
    assert "44111.77" not in page
    facts = page[page.index('id="facts"') :]
    assert "<th>epsilon</th><td>4.41e+04 at delta 1e-05 after - round(s): no meaningful" in facts
    assert "<h3>Disclosed beyond a plain Flower server</h3><p><code>labels</code>" in page


def test_active_defenses_are_read_generically() -> None:
    assert active_defenses({}) == []
    assert active_defenses({"defense": {"name": "none"}}) == []
    assert active_defenses({"defense": {"name": "dp"}}) == ["dp"]
    nested = {"defense": {"secagg": {"enabled": True}, "quantize": {"enabled": 0, "bits": 4}}}
    assert active_defenses(nested) == ["defense.secagg"]


def test_leakage_bands_span_successful_updates_only() -> None:
    rows = [
        _row(1, 1, "a", 10.0),
        _row(1, 2, "a", 30.0),
        _row(1, 3, "a", math.nan, status="failed"),
        _row(3, 1, "a", 5.0),
    ]
    band = leakage_bands(rows, "psnr_mean")["a"]
    assert band.rounds.tolist() == [1, 3]
    assert band.mean.tolist() == [20.0, 5.0]
    assert band.low.tolist() == [10.0, 5.0] and band.high.tolist() == [30.0, 5.0]
