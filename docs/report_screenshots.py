"""Screenshots of the two ``report.html`` pages for the docs: ``docs/report_predictions.png``, ``docs/report_grid.png``.

Both from real runs, nothing made up: the predictions page is the one the own-data tutorial (docs/tutorials/own_data.md) writes
(``cryomonai simulate-tomogram``, then the bundle's ``inference`` with the shipped classifier
``simclr_rb3d_bn_16_classifier`` at 16³ / 20 Å: the same commands, run here into a temporary folder);
the grid page is rendered from the main job's committed grid (``docs/grid_cpu``: its ``results.csv``,
``table.md`` and figures). Each page is opened in headless Debian chromium (as
``tests/test_report_html.py`` does); an embedding point is hovered before the predictions screenshot
(its particle's slice shows at the bottom right). Takes about a minute on 2 CPU cores.

Usage: ``.venv/bin/python docs/report_screenshots.py [--out docs] [--chromium /usr/bin/chromium]``
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from cryomonai.visualize.report_grid_html import write_grid_html

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def predictions_page(folder: Path) -> Path:
    """The own-data tutorial's inference (simulated tomogram, shipped classifier) → ``folder/pred/report.html``."""
    cfg = ROOT / "bundles" / "cryo_ssl" / "configs"
    subprocess.run([sys.executable, "-m", "cryomonai.cli", "simulate-tomogram", "--out", str(folder / "tomogram")],
                   check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file",
                    f"['{cfg}/common.json','{cfg}/inference.json']", "--bundle_root", str(cfg.parent),
                    "--checkpoint", "simclr_rb3d_bn_16_classifier", "--encoder", "rb3d_bn",
                    "--infer_table", str(folder / "tomogram" / "particles.star"), "--box", "16",
                    "--infer_voxel_size", "20", "--output_dir", str(folder / "pred")], check=True, capture_output=True)
    return folder / "pred" / "report.html"


def grid_page(folder: Path) -> Path:
    """The main job's committed grid (``docs/grid_cpu``) → ``folder/report.html``."""
    source = ROOT / "docs" / "grid_cpu"
    for name in ("results.csv", "table.md", "accuracy_vs_labels.png", "embedding_before_after.png"):
        shutil.copy(source / name, folder / name)
    figures = {"Accuracy vs labelled fraction": folder / "accuracy_vs_labels.png",
               "Embeddings before and after fine-tuning": folder / "embedding_before_after.png"}
    return write_grid_html(folder, folder / "results.csv", figures, title="Grid report: the main job (cpu preset)")


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
        (Path(tmp) / "grid").mkdir()
        predictions, grid = predictions_page(Path(tmp)), grid_page(Path(tmp) / "grid")
        shoot(browser, predictions, args.out / "report_predictions.png", hover="#embedding .scatterlayer .point")
        shoot(browser, grid, args.out / "report_grid.png", scroll_to="s0")
        browser.close()


if __name__ == "__main__":
    main()
