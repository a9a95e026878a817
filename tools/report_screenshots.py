"""Screenshots of the two ``report.html`` pages for the docs: ``docs/report_predictions.png``, ``docs/report_grid.png``.

The predictions page is built from a simulated tomogram (:func:`~cryomonai.simulate.tomogram.simulate_tomogram`,
3 classes, 40 particles, noise-free) with made-up predictions (the true class at a probability drawn from a
Beta distribution, one particle in six wrong) and features (class centres + noise), so no
training is needed; the grid page from a made-up ``results.csv`` and ``table.md``. Each page is
opened in headless Debian chromium (as ``tests/test_report_html.py`` does); an embedding point is
hovered before the predictions screenshot (its particle's slice shows at the bottom right). Takes ~20 s on 2 CPU cores.

Usage: ``.venv/bin/python tools/report_screenshots.py [--out docs] [--chromium /usr/bin/chromium]``
"""

from __future__ import annotations

import argparse
import io
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from playwright.sync_api import sync_playwright

from cryomonai.data.extract import read_picks
from cryomonai.io.mrc import read_mrc
from cryomonai.io.predictions import INPUT_CLASS, MAX_PROBABILITY, PREDICTED_NAME, prediction_columns
from cryomonai.io.table import ParticleTable
from cryomonai.simulate.tomogram import simulate_tomogram
from cryomonai.visualize.report_grid_html import write_grid_html
from cryomonai.visualize.results import plot_accuracy_vs_labels
from cryomonai.visualize.report_predictions import write_predictions_report

CLASSES = ("1bxn", "3j9i", "1s3x")
BOX = 16
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def predictions_page(folder: Path, seed: int = 0) -> Path:
    """A simulated tomogram's picks with made-up predictions → ``folder/report.html``."""
    rng = np.random.default_rng(seed)
    star = simulate_tomogram(folder / "tomo", (48, 128, 160), n_particles=40, snr=math.inf, classes=CLASSES, box=BOX,
                             seed=seed)
    table = read_picks(star)
    df = table.df.reset_index(drop=True)
    truth = np.array([CLASSES.index(c) for c in df["label"]])
    predicted = np.where(rng.random(len(df)) < 1 / 6, rng.integers(0, 3, len(df)), truth)
    top = 1 / 3 + (2 / 3) * rng.beta(4, 1.5, len(df))
    probs = np.repeat(((1 - top) / 2)[:, None], 3, axis=1)
    probs[np.arange(len(df)), predicted] = top
    df[INPUT_CLASS], df["label"] = df["label"], [CLASSES[k] for k in predicted]
    df[PREDICTED_NAME], df[MAX_PROBABILITY] = df["label"], top
    for column, p in zip(prediction_columns(CLASSES), probs.T):
        df[column] = p
    df["tomogram"] = str(star.parent / "tomogram.mrc")
    vol = read_mrc(star.parent / "tomogram.mrc")[0]
    h = BOX // 2
    padded = np.pad(vol, h, mode="edge")
    slices = np.stack([padded[int(round(z)) + h, int(round(y)):int(round(y)) + BOX, int(round(x)):int(round(x)) + BOX]
                       for x, y, z in df[["x", "y", "z"]].to_numpy(float)])
    features = np.eye(3)[predicted] * 2 + rng.normal(size=(len(df), 3)) * (1.2 - top)[:, None]
    return write_predictions_report(folder / "report.html", ParticleTable(df, list(CLASSES), star), features,
                                    slices, min_probability=0.0, method="pca", seed=seed)


def grid_page(folder: Path) -> Path:
    """A made-up grid (3 methods × 3 fractions × 3 repeats) → ``folder/report.html``."""
    rows, rng = [], np.random.default_rng(0)
    for method, gain in (("random", 0.0), ("simclr", 0.12), ("moco", 0.09)):
        for fraction in (0.1, 0.25, 1.0):
            for r in range(3):
                run_dir = f"cells/snr_0.05/{method}/default/f{round(fraction * 100):03d}_r{r}"
                (folder / run_dir).mkdir(parents=True, exist_ok=True)
                acc = 0.35 + 0.25 * fraction ** 0.5 + gain * (1 - fraction / 2) + rng.normal(0, 0.015)
                rows.append({"dataset": "snr_0.05", "snr": 0.05, "method": method, "label_fraction": fraction,
                             "repeat": r, "seed": r, "n_labelled": int(600 * fraction), "test_accuracy": acc,
                             "finetune_seconds": 30.0, "run_dir": run_dir})
    results = pd.DataFrame(rows)
    results.to_csv(folder / "results.csv", index=False)
    mean = results.groupby(["method", "label_fraction"])["test_accuracy"].agg(["mean", "std"])
    lines = ["# Test accuracy (mean ± std over 3 repeats), SNR 0.05", "", "| method | 10 % | 25 % | 100 % |",
             "|---|---|---|---|"]
    for method in ("random", "simclr", "moco"):
        lines.append(f"| {method} | " + " | ".join(f"{mean.loc[(method, f), 'mean']:.3f} ± {mean.loc[(method, f), 'std']:.3f}"
                                                   for f in (0.1, 0.25, 1.0)) + " |")
    (folder / "table.md").write_text("\n".join(lines) + "\n")
    figure = plot_accuracy_vs_labels(results, folder / "accuracy_vs_labels.png", num_classes=len(CLASSES))
    return write_grid_html(folder, folder / "results.csv", {"Accuracy vs labelled fraction": figure},
                           title="Grid report: made-up example")


def shoot(browser: object, page: Path, png: Path, hover: str = "", scroll_to: str = "s1") -> None:
    """Open ``page``, move the mouse over the first ``hover`` element (CSS), scroll to ``scroll_to`` (an id)
    and save a 1100×1000 screenshot as a ≤ 256-colour PNG."""
    tab = browser.new_page(viewport={"width": 1100, "height": 1000})
    tab.goto(page.as_uri(), wait_until="load")
    tab.wait_for_function("[...document.querySelectorAll('.plotly-graph-div')].every(d => d._fullLayout)")
    if hover:
        point = tab.locator(hover).first
        point.scroll_into_view_if_needed()
        box = point.bounding_box()
        tab.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        tab.wait_for_timeout(300)
    tab.evaluate(f"document.getElementById('{scroll_to}').scrollIntoView()")
    image = Image.open(io.BytesIO(tab.screenshot())).convert("RGB").quantize(256)
    png.parent.mkdir(parents=True, exist_ok=True)
    image.save(png, optimize=True)
    print(f"{png}: {png.stat().st_size // 1024} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
        predictions, grid = predictions_page(Path(tmp) / "pred"), grid_page(Path(tmp) / "grid")
        shoot(browser, predictions, args.out / "report_predictions.png", hover="#embedding .scatterlayer .point")
        shoot(browser, grid, args.out / "report_grid.png", scroll_to="s0")
        browser.close()


if __name__ == "__main__":
    main()
