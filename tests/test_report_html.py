"""``report.html`` for predictions and for grids, opened in a real browser (Debian's headless chromium).

The predictions report is built from a :class:`ParticlePredictionsWriter` run by a bare Ignite
engine on a tiny network (a 40×64×80 tomogram, 24 picks; no training); the grid report from a
hand-made ``results.csv`` and ``table.md``. Chromium is driven over the DevTools protocol by
Playwright's Python package (``executable_path=/usr/bin/chromium``: no browser download); each
page must render without console errors (or network requests), the probability filter must
change the picks shown, hovering a point must show its particle's slice, and a screenshot must
not be blank. Without chromium the browser tests are skipped, unless
``CRYOMONAI_BROWSER_TESTS=1`` (CI), where they fail; ``CRYOMONAI_CHROMIUM`` names another binary.
"""

from __future__ import annotations

import io
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch
from ignite.engine import Engine
from torch import nn

from cryomonai.engines.predictions import ParticlePredictionsWriter
from cryomonai.io import read_particle_table, write_mrc
from cryomonai.io.predictions import MAX_PROBABILITY
from cryomonai.visualize import report_predictions
from cryomonai.visualize.report_grid_html import write_grid_html
from cryomonai.visualize.report_predictions import write_inference_report

CLASSES = ["1bxn", "3j9i", "1s3x"]
SHAPE = (40, 64, 80)  # (z, y, x) voxels
N, BOX = 24, 8
VIEWPORT = {"width": 1200, "height": 900}
#: Debian's chromium flags: no network, no first-run or sync machinery (Playwright adds --headless and its pipe)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


class _Net(nn.Module):
    """(B, 1, 8, 8, 8) → logits (B, 3) through an ``encoder`` (B, 6), as a classifier is laid out."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(BOX**3, 6))
        self.head = nn.Linear(6, len(CLASSES))
        with torch.no_grad():
            self.head.weight.mul_(8.0)  # spread the probabilities over (1/3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _writer(tmp_path: Path, with_tomogram: bool = True) -> ParticlePredictionsWriter:
    """A writer after an inference run over :data:`N` random particles (of one tomogram, or of none)."""
    rng = np.random.default_rng(0)
    tomogram = tmp_path / "TS_01.mrc"
    write_mrc(tomogram, rng.normal(size=SHAPE).astype(np.float32), voxel_size=10.0)
    picks = pd.DataFrame({"x": rng.uniform(4, SHAPE[2] - 4, N), "y": rng.uniform(4, SHAPE[1] - 4, N),
                          "z": rng.uniform(4, SHAPE[0] - 4, N)})
    if with_tomogram:
        picks.insert(0, "tomogram", tomogram.name)
    else:
        picks.insert(0, "path", [f"particles/p{i}.mrc" for i in range(N)])
    picks.to_csv(tmp_path / "picks.csv", index=False)
    table = read_particle_table(tmp_path / "picks.csv", class_names=CLASSES, check_files=False)
    writer = ParticlePredictionsWriter(tmp_path / "out", table, CLASSES)
    net = _Net()
    engine = Engine(lambda e, batch: {"pred": net(batch["image"])})
    engine.network = net
    writer.attach(engine)
    images = torch.as_tensor(rng.normal(size=(N, 1, BOX, BOX, BOX)), dtype=torch.float32)
    engine.run([{"image": images[i:i + 8], "index": torch.arange(i, i + 8)} for i in range(0, N, 8)])
    return writer


def test_the_writer_keeps_each_particles_central_slice(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    assert writer.slices is not None and writer.slices.shape == (N, BOX, BOX) and writer.slices.dtype == np.uint8
    assert writer.slices.min() == 0 and writer.slices.max() == 255  # 1–99 % scaled per particle
    assert (writer.output_dir / "predictions.star").is_file()


def test_the_predictions_report_holds_every_section_in_one_file(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    page = write_inference_report(writer, method="pca")
    assert page == writer.output_dir / "report.html"
    text = page.read_text().split("</head>")[1]  # the page, after plotly.js
    assert text.count("Plotly.newPlot") == 3  # tomogram slices, histogram, embedding
    assert 'id="min-prob"' in text and 'id="n-shown"' in text and text.count("data:image/png;base64,") > N
    assert "https://" not in text  # nothing to fetch
    assert not list(writer.output_dir.glob(".*.tmp"))


def test_the_predictions_report_without_a_tomogram_says_so(tmp_path: Path) -> None:
    page = write_inference_report(_writer(tmp_path, with_tomogram=False), method="pca")
    text = page.read_text()
    assert "No tomogram: these are predictions on extracted subtomograms" in text
    assert text.count("Plotly.newPlot") == 2


def test_an_encoder_run_has_no_report(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    writer.class_names = None  # as the ``embed`` run's writer
    assert write_inference_report(writer) is None


def _grid(tmp_path: Path) -> Path:
    """A grid folder: results.csv (2 methods × 2 fractions × 3 repeats), table.md, one PNG, the cell folders."""
    rows = []
    for method, base in (("random", 0.4), ("simclr", 0.6)):
        for fraction in (0.1, 1.0):
            for r in range(3):
                run_dir = f"cells/snr_inf/{method}/default/f{round(fraction * 100):03d}_r{r}"
                (tmp_path / run_dir).mkdir(parents=True)
                rows.append({"dataset": "snr_inf", "snr": math.inf, "method": method, "label_fraction": fraction,
                             "repeat": r, "seed": r, "test_accuracy": base + 0.2 * fraction + 0.01 * r,
                             "run_dir": run_dir})
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    (tmp_path / "table.md").write_text("# Results\n\n| method | 10 % | 100 % |\n|---|---|---|\n"
                                       "| random | 0.41 | 0.61 |\n| simclr | **0.61** | **0.81** |\n")
    png = io.BytesIO()
    mpimg.imsave(png, np.random.default_rng(0).random((60, 80)), format="png")
    (tmp_path / "accuracy_vs_labels.png").write_bytes(png.getvalue())
    return tmp_path


def test_the_grid_report_renders_tables_curve_figures_and_cell_links(tmp_path: Path) -> None:
    out = _grid(tmp_path)
    page = write_grid_html(out, out / "results.csv", {"Accuracy": out / "accuracy_vs_labels.png",
                                                       "missing": out / "nope.png"})
    text = page.read_text().split("</head>")[1]  # the page, after plotly.js
    assert "<table>" in text and "<strong>0.61</strong>" in text  # table.md rendered by Python-Markdown
    assert text.count('class="cell" href="cells/snr_inf/') == 12 and 'id="accuracy-curve"' in text
    assert text.count("data:image/png;base64,") == 1
    assert "<th>context_accuracy</th>" not in text  # a column results.csv does not have is not listed


def test_the_grid_reports_cell_table_shows_the_validation_and_context_columns(tmp_path: Path) -> None:
    """The numbers the grid chose on (validation), the deployed classifier and the context control, per cell."""
    out = _grid(tmp_path)
    df = pd.read_csv(out / "results.csv")
    df = df.assign(recipe="lpft_5", best_val_accuracy=0.5, val_linear_probe_accuracy=0.4, deployed="finetune",
                   deployed_test_accuracy=df["test_accuracy"], context_accuracy=0.1034)
    df.to_csv(out / "results.csv", index=False)
    text = write_grid_html(out, out / "results.csv").read_text().split('<table id="cells">')[1].split("</table>")[0]
    for column in ("recipe", "best_val_accuracy", "val_linear_probe_accuracy", "deployed", "deployed_test_accuracy",
                   "context_accuracy"):
        assert f"<th>{column}</th>" in text, column
    assert text.count("<td>0.1034</td>") == 12 and text.count("<td>lpft_5</td>") == 12


# ---------------------------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian chromium under Playwright; skipped without chromium unless CRYOMONAI_BROWSER_TESTS=1."""
    given = os.environ.get("CRYOMONAI_CHROMIUM", "")  # another browser binary; default: chromium on the PATH
    chromium = (given if os.path.isfile(given) else None) if given else shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CRYOMONAI_BROWSER_TESTS") == "1":
            pytest.fail("CRYOMONAI_BROWSER_TESTS=1 but no chromium: apt-get install -y chromium")
        pytest.skip("no chromium (apt-get install -y chromium; CRYOMONAI_BROWSER_TESTS=1 makes this a failure)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _open(browser: object, page_file: Path) -> tuple[object, list[str]]:
    """A browser tab on ``page_file`` once its figures are drawn, and the list its console errors go to."""
    errors: list[str] = []
    tab = browser.new_page(viewport=VIEWPORT)
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("request", lambda r: errors.append(f"network request {r.url}") if not r.url.startswith(("file:", "data:"))
           else None)
    tab.goto(page_file.as_uri(), wait_until="load")
    tab.wait_for_function("[...document.querySelectorAll('.plotly-graph-div')].every(d => d._fullLayout)")
    return tab, errors


def _screenshot(tab: object, path: Path) -> np.ndarray:
    """Save a viewport screenshot to ``path``; returns it as an (H, W, C) array, checked not blank."""
    tab.screenshot(path=str(path))
    img = mpimg.imread(path)
    assert img.shape[:2] == (VIEWPORT["height"], VIEWPORT["width"]) and img[..., :3].var() > 0
    return img


def test_the_predictions_report_in_chromium(browser, tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    tab, errors = _open(browser, write_inference_report(writer, method="pca"))
    probs = writer.predictions_table().df[MAX_PROBABILITY].to_numpy()
    shown = "#embedding .scatterlayer .point"
    assert tab.inner_text("#n-shown") == str(N) and tab.locator(shown).count() == N
    threshold = float(np.round(np.median(probs), 2))
    tab.locator("#min-prob").fill(str(threshold))
    expected = int((probs >= threshold).sum())
    assert 0 < expected < N
    tab.wait_for_function(f"document.querySelectorAll('{shown}').length === {expected}")
    assert tab.inner_text("#n-shown") == str(expected)
    assert tab.locator("#tomogram-0 .scatterlayer .point").count() == 3 * expected  # xy, xz and yz
    point = tab.locator(shown).first  # the mouse over a point: its particle's slice in the hover box
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    tab.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tab.wait_for_function("getComputedStyle(document.getElementById('hover-box')).display === 'block'")
    assert tab.get_attribute("#hover-img", "src").startswith("data:image/png;base64,")
    assert "#" in tab.inner_text("#hover-text") and "p = " in tab.inner_text("#hover-text")
    tab.locator("#tomogram-0").scroll_into_view_if_needed()
    _screenshot(tab, tmp_path / "predictions.png")
    assert errors == []


def test_many_particles_are_drawn_with_webgl_and_filtered_alike(browser, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(report_predictions, "SVG_POINTS", 0)  # as if there were more than SVG_POINTS particles
    writer = _writer(tmp_path)
    tab, errors = _open(browser, write_inference_report(writer, method="pca"))
    lengths = "document.getElementById('embedding').data.map(t => t.type + ':' + t.x.length)"
    assert {t.split(":")[0] for t in tab.evaluate(lengths)} == {"scattergl"}
    probs = writer.predictions_table().df[MAX_PROBABILITY].to_numpy()
    tab.locator("#min-prob").fill("0.8")
    tab.wait_for_function(f"document.getElementById('n-shown').textContent === '{int((probs >= 0.8).sum())}'")
    assert sum(int(t.split(":")[1]) for t in tab.evaluate(lengths)) == int((probs >= 0.8).sum())
    assert errors == []


def test_the_grid_report_in_chromium(browser, tmp_path: Path) -> None:
    out = _grid(tmp_path)
    tab, errors = _open(browser, write_grid_html(out, out / "results.csv", {"Accuracy": out / "accuracy_vs_labels.png"}))
    assert tab.locator("#accuracy-curve .scatterlayer .point").count() == 4  # 2 methods × 2 fractions
    assert tab.eval_on_selector("img.figure", "img => img.naturalWidth") == 80
    href = tab.eval_on_selector("a.cell", "a => a.href")
    assert href.startswith("file://") and Path(href[len("file://"):]).is_dir()
    _screenshot(tab, tmp_path / "grid.png")
    assert errors == []
