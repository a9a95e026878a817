"""The whole report of a finished grid, from its :class:`~cryomonai.experiment.record.GridRecord`.

:func:`~cryomonai.experiment.report.write_report` writes ``table.md``, the t-tests,
``accuracy_vs_labels.png`` and the confusion matrices from ``results.csv``; this adds, for the
first dataset and the best SSL method (highest mean test accuracy at the lowest label fraction):

* ``embedding_before_after.png`` — t-SNE of the test subtomograms' encoder features, random-init
  encoder vs the pretrained one, coloured by class;
* ``gradcam.png`` — 3D Grad-CAM (orthogonal central slices) of ``gradcam_examples`` test
  subtomograms, fine-tuned from random init vs from the pretrained encoder, at the lowest label
  fraction, repeat 0 (the paper's Figure 8);
* ``summary.json`` — the preset, the cell count and the total run time;
* ``report.html`` — all of the above in one self-contained page, with an interactive accuracy
  curve and a link to each cell's run folder (:func:`~cryomonai.visualize.report_grid_html.write_grid_html`).

While a grid runs, :func:`write_interim_report` writes ``interim/`` after each finished repeat:
the tables, t-tests and plots of :func:`~cryomonai.experiment.report.write_report` over the repeats
done so far, under a banner saying how many; the final report removes it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cryomonai.data.dataset import VolumeStackDataset
from cryomonai.evaluation.gradcam import gradcam_volumes, load_finetuned_classifier
from cryomonai.evaluation.readouts import encoder_features
from cryomonai.evaluation.stats import order_datasets, seconds_summary
from cryomonai.experiment.advice import deployed_scores
from cryomonai.experiment.edges import extensions_table, recipe_overrides
from cryomonai.experiment.layout import GridLayout
from cryomonai.experiment.network_keys import encoder_kwargs
from cryomonai.experiment.record import GridRecord
from cryomonai.experiment.report import write_report
from cryomonai.io.atomic import atomic_write
from cryomonai.io.table import read_particle_table
from cryomonai.layout import RunLayout
from cryomonai.transforms import eval_transform
from cryomonai.visualize.embedding import plot_embeddings_before_after
from cryomonai.visualize.gradcam import plot_gradcam_overlays
from cryomonai.visualize.report_grid_html import write_grid_html

__all__ = ["INTERIM", "remove_interim_report", "write_grid_report", "write_interim_report"]

#: the folder of the interim report, inside the grid's folder
INTERIM = "interim"


def _best_method(results, dataset: str) -> str | None:
    """The SSL arm shown in the figures: the highest mean validation score of its deployed classifier at the
    dataset's fewest labels (as "Which method to use" chooses; the test split is not read to choose)."""
    block = results[(results["dataset"] == dataset) & (results["method"] != "random")]
    if block.empty:
        return None
    low = deployed_scores(block[block["label_fraction"] == block["label_fraction"].min()])
    val = low.groupby("method", sort=False)["val"].mean().dropna()
    return str(val.idxmax()) if len(val) else str(low["method"].iloc[0])


def _test_volumes(table: Any, cache: str, n: int, seed: int) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """Row indices, normalised volumes (n, 1, D, H, W) and labels of ``n`` test particles, one per class first."""
    ds = VolumeStackDataset(table, cache, split="test", transform=eval_transform(), progress=False)
    labels = np.array([d["label"] for d in ds.data])
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    firsts = [order[labels[order] == c][0] for c in np.unique(labels)]
    pick = (firsts + [i for i in order if i not in firsts])[:n]
    items = [ds[int(i)] for i in pick]
    vols = torch.stack([torch.as_tensor(it["image"]) for it in items])
    return np.array([it["index"] for it in items]), vols, labels[pick]


def _data_section(record: GridRecord, datasets: list[str]) -> str:
    """Markdown: per dataset its source, particles per split, classes, input and working volume size."""
    lines = ["", "## Data", "", "| dataset | source | train / val / test | classes | input volumes | working volumes |",
             "|---|---|---|---|---|---|"]
    for name in datasets:
        ds = record.dataset(name)
        table = read_particle_table(record.tables[name], check_files=False)
        counts = table.df["split"].value_counts()
        split = " / ".join(str(int(counts.get(k, 0))) for k in ("train", "val", "test"))
        if "table" in ds:
            source = f"table `{ds['table']}`" + ("" if record.tables[name] == Path(ds["table"]) else
                                                  f" (split made here: `{record.tables[name]}`)")
        else:
            source = "simulated: " + ", ".join(f"{k} {v}" for k, v in ds.items() if k != "name")
        sidecar = record.caches[name].with_name(record.caches[name].name + ".json")
        info = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        shape = info.get("shape", [0, 0])
        input_shape = info.get("input_shape", shape[1:])
        input_voxel = info.get("input_voxel_size", info.get("voxel_size", float("nan")))

        def size(edge: list | int, voxel: float) -> str:
            return f"{edge[0] if isinstance(edge, list) and edge else edge}³ at {voxel:.3g} Å"

        lines.append(f"| `{name}` | {source} | {split} | {len(table.class_names)}: {', '.join(table.class_names)} "
                     f"| {size(input_shape, input_voxel)} | {size(shape[1:], info.get('voxel_size', float('nan')))} |")
    return "\n".join(lines) + "\n"


def _recipes(record: GridRecord) -> dict[str, Any]:
    """The report's recipe arguments: every recipe (those added at the edge of the space too) and the added ones."""
    extended = GridLayout(record.out).recipes_extended
    return {"recipes": recipe_overrides(record.preset, extended), "extended": extensions_table(extended)}


def write_grid_report(record: GridRecord) -> dict[str, Path]:
    """Write the report of the grid that ``record`` describes into its folder; returns the files by key."""
    preset, out = record.preset, record.out
    results = record.results()
    dataset = order_datasets(results)[0]
    table = read_particle_table(record.tables[dataset])
    written = write_report(record.results_path, out, list(table.class_names), **_recipes(record))
    with atomic_write(written["table"], "w") as fh:
        fh.write(Path(written["table"]).read_text() + _data_section(record, order_datasets(results)))
    best = _best_method(results, dataset)
    cache = str(record.caches[dataset])
    if best is not None:
        pretrained = str(record.pretrained[(dataset, best, preset.seed)])
        test = (table.df["split"] == "test").to_numpy()
        feats = [encoder_features(table, cache, preset.encoder, p, preset.seed, **encoder_kwargs(preset.common))[test]
                 for p in ("", pretrained)]
        written["embedding"] = plot_embeddings_before_after(
            *feats, table.df["label_index"].to_numpy()[test], list(table.class_names), out / "embedding_before_after.png",
            method=preset.report.get("embedding", "tsne"), seed=preset.seed,
            titles=("random-init encoder", f"{best}-pretrained encoder"),
        )
        n = int(preset.report.get("gradcam_examples", 4))
        if n > 0:  # gradcam_examples 0: no Grad-CAM figure
            written["gradcam"] = _gradcam(record, results, table, cache, dataset, best, n)

    summary = {"preset": preset.name, "cells": int(len(results)), "selection_runs": int(len(record.selection())),
               **seconds_summary(results)}
    with atomic_write(out / "summary.json", "w") as fh:
        fh.write(json.dumps(summary, indent=2))
    written["summary"] = out / "summary.json"
    written["html"] = write_grid_html(out, record.results_path, _figure_captions(written),
                                      title=f"Grid report: {preset.name}")
    return written


def _gradcam(record: GridRecord, results: Any, table: Any, cache: str, dataset: str, best: str, n: int) -> Path:
    """``gradcam.png``: Grad-CAM of ``n`` test particles under the random-init and the ``best`` arm's
    classifiers (repeat 0 at the lowest label fraction)."""
    preset, out = record.preset, record.out
    _, vols, labels = _test_volumes(table, cache, n, preset.seed)
    low = min(preset.label_fractions)
    cams, preds = {}, {}
    for method in ("random", best):
        cell = results[(results.dataset == dataset) & (results.method == method) & (results.label_fraction == low)]
        if cell.empty:  # a grid without the random-init baseline
            continue
        ckpt = RunLayout(out / str(cell.sort_values("repeat")["run_dir"].iloc[0])).finetune_best
        model, _ = load_finetuned_classifier(ckpt)
        name = "random init" if method == "random" else f"{method} pretrained"
        cams[name] = gradcam_volumes(model, vols)
        with torch.no_grad():
            preds[name] = model(vols).argmax(1).tolist()
    return plot_gradcam_overlays(vols, cams, labels, list(table.class_names), out / "gradcam.png", preds)


def _figure_captions(written: dict[str, Path]) -> dict[str, Path]:
    """The PNG figures of a report by caption, in reading order (accuracy, the gain over random init, confusion
    matrices, embedding, Grad-CAM)."""
    captions = {"accuracy": "Accuracy vs labelled fraction", "gain": "Gain over random init (points, Holm Welch p)",
                "embedding": "Embeddings before and after pretraining", "gradcam": "3D Grad-CAM, random init vs pretrained"}
    out = {captions[k]: written[k] for k in ("accuracy", "gain") if k in written}
    out.update({k.replace("confusion_", "Confusion matrices, "): p for k, p in written.items() if k.startswith("confusion_")})
    out.update({captions[k]: written[k] for k in ("embedding", "gradcam") if k in written})
    return out


def write_interim_report(record: GridRecord, repeats_done: int) -> Path:
    """The report over the first ``repeats_done`` repeats of a grid still running, in ``<out>/interim/``.

    Only :func:`~cryomonai.experiment.report.write_report`'s files (no embedding, Grad-CAM or
    summary); ``table.md`` opens with a banner naming the repeats done and the total. Returns ``table.md``.
    """
    out = record.out / INTERIM
    out.mkdir(parents=True, exist_ok=True)
    results = record.results()
    results = results[results["repeat"] < repeats_done].copy()
    results["run_dir"] = [str((record.out / d).resolve()) for d in results["run_dir"]]  # read from interim/
    with atomic_write(out / "results.csv", "w", newline="") as fh:
        results.to_csv(fh, index=False)
    dataset = order_datasets(results)[0]
    classes = list(read_particle_table(record.tables[dataset], check_files=False).class_names)
    written = write_report(out / "results.csv", out, classes, **_recipes(record))
    n = int(record.preset.repeats)
    banner = (f"> **Interim report: {repeats_done} of {n} repeats finished.** The grid is still running; "
              f"its final report (`../table.md`, with all {n} repeats) replaces this folder. "
              + ("With one repeat there is no spread and no t-test yet.\n\n" if repeats_done == 1 else "\n\n"))
    with atomic_write(written["table"], "w") as fh:
        fh.write(banner + Path(written["table"]).read_text())
    return written["table"]


def remove_interim_report(out: Path) -> None:
    """Remove ``<out>/interim/`` (once the final report is written)."""
    shutil.rmtree(Path(out) / INTERIM, ignore_errors=True)
