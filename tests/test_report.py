"""The experiment report: t-tests vs random init, Table 1 as Markdown, figures, and 3D Grad-CAM."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import ttest_ind
from torch import nn

from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.evaluation import gradcam_volumes, load_finetuned_classifier, summarise, ttest_vs_baseline
from cryomonai.experiment import write_report, write_table
from cryomonai.visualize import (
    plot_accuracy_vs_labels,
    plot_confusion_matrices,
    plot_gain_over_baseline,
    plot_embeddings_before_after,
    plot_gradcam_overlays,
)
from cryomonai.networks import Classifier, build_encoder

CLASSES = ("1bxn", "3j9i", "1s3x")
#: (fraction, method) → test accuracy of the 3 repeats on dataset snr_0.05. SimCLR is best at 25 %,
#: MoCo at 100 %.
ACC = {
    (0.25, "random"): [0.15, 0.16, 0.18],
    (0.25, "simclr"): [0.40, 0.42, 0.41],
    (0.25, "moco"): [0.37, 0.36, 0.40],
    (1.0, "random"): [0.59, 0.60, 0.58],
    (1.0, "simclr"): [0.61, 0.63, 0.60],
    (1.0, "moco"): [0.68, 0.70, 0.67],
}


def _results() -> pd.DataFrame:
    """3 methods × 2 fractions × 3 repeats on snr_0.05, and the same shifted by +0.1 on snr_inf."""
    rows = []
    for dataset, snr, shift in (("snr_0.05", 0.05, 0.0), ("snr_inf", math.inf, 0.1)):
        for (fraction, method), accs in ACC.items():
            for r, acc in enumerate(accs):
                rows.append({"dataset": dataset, "snr": snr, "method": method, "label_fraction": fraction,
                             "repeat": r, "seed": r, "n_labelled": int(300 * fraction), "best_val_accuracy": acc,
                             "test_accuracy": acc + shift, "linear_probe_accuracy": acc - 0.05,
                             "knn_accuracy": math.nan, "finetune_seconds": 1.0, "pretrain_seconds": 2.0,
                             "run_dir": f"{dataset}/{method}/f{fraction:g}/r{r}"})
    return pd.DataFrame(rows)


def _png(path: Path) -> np.ndarray:
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100 and img.shape[2] in (3, 4)
    assert img[..., :3].std() > 0.01  # not a blank canvas
    return img


# ---------------------------------------------------------------------------------------------- stats


def test_ttest_is_scipys_two_tailed_student_test() -> None:
    table = ttest_vs_baseline(_results())
    assert len(table) == 2 * 2 * 2  # datasets × fractions × (methods ≠ random)
    assert set(table["method"]) == {"simclr", "moco"} and (table["note"] == "").all()
    mine = table[table["dataset"] == "snr_0.05"]
    for _, row in mine.iterrows():
        fraction = row["label_fraction"]
        v, base = np.array(ACC[(fraction, row["method"])]), np.array(ACC[(fraction, "random")])
        student = ttest_ind(v, base)  # scipy's default: equal variances, two-sided
        assert row["p"] == pytest.approx(student.pvalue, rel=1e-12)
        assert row["t"] == pytest.approx(student.statistic, rel=1e-12)
        one_tailed = ttest_ind(v, base, alternative="greater").pvalue
        welch = ttest_ind(v, base, equal_var=False).pvalue
        assert row["p"] == pytest.approx(2 * one_tailed) and not np.isclose(row["p"], one_tailed, atol=0)
        assert not np.isclose(row["p"], welch, rtol=1e-6, atol=0)  # pooled variance, not Welch's
        assert row["mean"] == pytest.approx(v.mean()) and row["std"] == pytest.approx(np.std(v, ddof=1))
        assert row["baseline_std"] == pytest.approx(np.std(base, ddof=1)) and row["n"] == row["baseline_n"] == 3
    # rows: ∞ first, then fractions ascending, then methods in the paper's column order
    assert table["dataset"].tolist()[:4] == ["snr_inf"] * 4
    assert table["label_fraction"].tolist()[:4] == [0.25, 0.25, 1.0, 1.0]
    assert table["method"].tolist()[:2] == ["simclr", "moco"]


def test_ttest_is_nan_with_a_reason_when_undefined() -> None:
    df = pd.DataFrame({
        "dataset": "d", "label_fraction": [0.5] * 5 + [1.0] * 4 + [0.25] * 2,
        "method": ["random", "random", "random", "moco", "vicreg", "random", "random", "moco", "moco", "moco", "moco"],
        "test_accuracy": [0.2, 0.3, 0.25, 0.5, 0.4, 0.6, 0.6, 0.6, 0.6, 0.3, 0.4],
    })
    table = ttest_vs_baseline(df).set_index(["label_fraction", "method"])
    reasons = {(0.5, "moco"): "needs ≥ 2", (1.0, "moco"): "zero variance", (0.25, "moco"): "no baseline"}
    for key, reason in reasons.items():
        assert math.isnan(table.loc[key, "p"]) and math.isnan(table.loc[key, "t"]) and reason in table.loc[key, "note"]
    with pytest.raises(CryoDataError, match="missing column"):
        ttest_vs_baseline(df, metric="knn_accuracy")


def test_summarise_counts_only_finite_values() -> None:
    df = _results()
    df.loc[(df["method"] == "moco") & (df["repeat"] == 0), "linear_probe_accuracy"] = math.nan
    s = summarise(df, "linear_probe_accuracy")
    moco = s[(s["dataset"] == "snr_0.05") & (s["method"] == "moco") & (s["label_fraction"] == 1.0)].iloc[0]
    assert moco["n"] == 2 and moco["mean"] == pytest.approx(np.mean([0.65, 0.62]))
    assert moco["std"] == pytest.approx(np.std([0.65, 0.62], ddof=1))
    assert s["method"].tolist()[:3] == ["random", "random", "simclr"]  # random first, fractions ascending
    assert summarise(df, "knn_accuracy").empty


# ---------------------------------------------------------------------------------------------- table


def test_table_has_table1_layout_mean_std_bold_best_and_p(tmp_path: Path) -> None:
    df = _results()
    text = write_table(df, tmp_path / "table.md").read_text()
    main = text.split("## Linear-probe")[0]
    assert "n = 3 repeats per cell" in main and "two-tailed Student's t-test" in main
    assert main.index("SNR ∞") < main.index("SNR 0.05")  # blocks by decreasing SNR
    assert main.count("| Labelled (%) | Random init | SimCLR | MoCo |") == 2
    block = main.split("SNR 0.05")[1]
    pvalues = {k: ttest_ind(ACC[k], ACC[(k[0], "random")]).pvalue for k in ACC if k[1] != "random"}
    p = {k: "p<0.001" if v < 0.001 else f"p={v:.3f}" for k, v in pvalues.items()}  # the table's p format
    row25 = next(line for line in block.splitlines() if line.startswith("| 25 |"))
    row100 = next(line for line in block.splitlines() if line.startswith("| 100 |"))
    # hand-computed: means and sample stds (ddof=1) in %, one decimal
    assert row25 == f"| 25 | 16.3 ± 1.5 | **41.0 ± 1.0** ({p[(0.25, 'simclr')]}) | 37.7 ± 2.1 ({p[(0.25, 'moco')]}) |"
    assert row100 == f"| 100 | 59.0 ± 1.0 | 61.3 ± 1.5 ({p[(1.0, 'simclr')]}) | **68.3 ± 1.5** ({p[(1.0, 'moco')]}) |"
    assert "(p=0.0" in row100  # simclr at 100 %: a p-value shown with three decimals
    rows = [line for line in main.splitlines() if line.startswith("| 25 |") or line.startswith("| 100 |")]
    assert len(rows) == 4 and all(line.count("**") == 2 for line in rows)  # one bold cell per row
    assert "Linear-probe accuracy" in text and "kNN" not in text  # all-NaN metrics get no table
    probe = text.split("## Linear-probe")[1]
    assert "| 25 | 11.3 ± 1.5 |" in probe.replace("| SNR 0.05 (`snr_0.05`) ", "|")


# ---------------------------------------------------------------------------------------------- figures


def _write_predictions(root: Path, df: pd.DataFrame, seed: int = 0) -> None:
    """A predictions_test.csv per cell: 30 test particles, right with probability = the cell's accuracy."""
    rng = np.random.default_rng(seed)
    for _, row in df.iterrows():
        truth = rng.integers(0, len(CLASSES), size=30)
        right = rng.random(30) < row["test_accuracy"]
        pred = np.where(right, truth, (truth + 1) % len(CLASSES))
        folder = root / row["run_dir"] / "eval"
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"index": range(30), "path": "", "label": [CLASSES[t] for t in truth],
                      "prediction": [CLASSES[k] for k in pred], "pred_index": pred}).to_csv(
            folder / "predictions_test.csv", index=False)


def test_figures_are_valid_pngs(tmp_path: Path) -> None:
    df = _results()
    _png(plot_accuracy_vs_labels(df, tmp_path / "acc.png", num_classes=len(CLASSES)))
    _write_predictions(tmp_path, df[df["dataset"] == "snr_0.05"])
    cells = {m: sorted(tmp_path.glob(f"snr_0.05/{m}/f1/*/eval/predictions_test.csv")) for m in ("random", "moco")}
    assert all(len(files) == 3 for files in cells.values())
    _png(plot_confusion_matrices(cells, CLASSES, tmp_path / "cm.png", title="SNR 0.05, 100 %"))
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 8)
    after = np.eye(3)[labels] * 3 + rng.normal(size=(24, 3))
    _png(plot_embeddings_before_after(rng.normal(size=(24, 3)), after, labels, CLASSES, tmp_path / "emb.png",
                                      method="pca"))
    with pytest.raises(CryoDataError, match="not in class_names"):
        plot_confusion_matrices(cells, ("a", "b", "c"), tmp_path / "bad.png")


def test_write_report_from_results_csv(tmp_path: Path) -> None:
    df = _results()
    _write_predictions(tmp_path, df)
    df.to_csv(tmp_path / "results.csv", index=False)
    written = write_report(tmp_path / "results.csv", tmp_path / "report", CLASSES)
    assert {"table", "ttest", "stats", "gain", "accuracy", "confusion_snr_0.05_f0.25", "confusion_snr_0.05_f1",
            "confusion_snr_inf_f0.25", "confusion_snr_inf_f1"} == set(written)
    stats = pd.read_csv(written["stats"])  # Student, Welch, paired and Holm over the 8 comparisons
    assert len(stats) == 8 and {"student_p", "welch_p", "paired_p", "paired_p_holm"} <= set(stats.columns)
    assert "**" in written["table"].read_text()
    ttest = pd.read_csv(written["ttest"])
    assert len(ttest) == 8 and ttest["p"].between(0, 1).all()
    _png(written["accuracy"]), _png(written["confusion_snr_inf_f1"])


# ---------------------------------------------------------------------------------------------- Grad-CAM


class _CornerSelect(nn.Module):
    """(B, 1, 8, 8, 8) → (B, 2, 8, 8, 8): channel c = the input inside octant c only (a fixed 1³ conv + mask)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 1, bias=False)
        nn.init.ones_(self.conv.weight)
        mask = torch.zeros(2, 8, 8, 8)
        mask[0, :4, :4, 4:] = 1  # class 0: low z, low y, high x
        mask[1, 4:, 4:, :4] = 1  # class 1: high z, high y, low x
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.mask


class _CornerModel(nn.Module):
    """Score of class c = sum of the (2× average-pooled) input over octant c; CAM layer at half resolution."""

    cam_layer = "select"

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool3d(2)
        self.select = _CornerSelect()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 16, 16, 16) → (B, 2)
        return self.select(self.pool(x)).sum(dim=(2, 3, 4))


def _octant(cam: np.ndarray) -> tuple[bool, bool, bool]:
    """(z high, y high, x high) of the argmax voxel of a (16, 16, 16) map."""
    z, y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return z >= 8, y >= 8, x >= 8


def test_gradcam_peaks_in_the_octant_that_decides_the_class() -> None:
    # volume 0: class-0 octant filled (score 64) + one bright voxel in class 1's octant (score 6.25) → class 0;
    # volume 1: the mirror image → class 1. A score summed over the batch's classes would put the peak on
    # the bright voxel (MONAI's GradCAM with class_idx=None on a mixed batch does this).
    x = torch.zeros(2, 1, 16, 16, 16)
    x[0, 0, :8, :8, 8:] = 1.0
    x[0, 0, 12, 12, 2] = 50.0
    x[1, 0, 8:, 8:, :8] = 1.0
    x[1, 0, 2, 2, 12] = 50.0
    model = _CornerModel()
    assert model(x).argmax(1).tolist() == [0, 1]
    cams = gradcam_volumes(model, x)
    assert cams.shape == (2, 16, 16, 16) and cams.dtype == np.float32
    assert cams.min() >= 0 and cams.max() == pytest.approx(1.0)
    assert _octant(cams[0]) == (False, False, True) and _octant(cams[1]) == (True, True, False)
    assert cams[0][:8, :8, 8:].mean() > 10 * cams[0][8:, 8:, :8].mean()
    # an explicit class: class 1 of volume 0 is the bright voxel's octant
    assert _octant(gradcam_volumes(model, x[:1], class_idx=1)[0]) == (True, True, False)


def test_gradcam_on_rb3d_classifier_frozen_or_not() -> None:
    torch.manual_seed(0)
    net = Classifier(build_encoder("rb3d"), 3)
    frozen = Classifier(build_encoder("rb3d"), 3, freeze_encoder=True)
    frozen.load_state_dict(net.state_dict())
    x = torch.randn(3, 1, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # Grad-CAM turns gradients on for itself
        cams = gradcam_volumes(net, x)
        cams_frozen = gradcam_volumes(frozen, x)
    assert cams.shape == (3, 16, 16, 16) and np.isfinite(cams).all()
    assert cams.min() >= 0 and cams.max() <= 1 and cams.reshape(3, -1).max(1).max() == pytest.approx(1.0)
    np.testing.assert_allclose(cams_frozen, cams, atol=1e-5)
    # the caller's models are left as they were: frozen stays frozen, training mode kept, no hooks
    assert not any(p.requires_grad for p in frozen.encoder.parameters()) and net.training
    assert not net.encoder.features.block4._forward_hooks and not net.encoder.features.block4._backward_hooks
    with pytest.raises(ConfigError, match="target layer"):
        gradcam_volumes(net, x, target_layer="encoder.nope")
    with pytest.raises(CryoDataError, match=r"\(N, 1, D, H, W\)"):
        gradcam_volumes(net, x[:, 0, 0])


def test_gradcam_overlay_figure(tmp_path: Path) -> None:
    x = torch.zeros(2, 1, 16, 16, 16)
    x[:, :, 4:12, 4:12, 4:12] = 1.0
    model = _CornerModel()
    cams = {"MoCo": gradcam_volumes(model, x, class_idx=0), "Random init": gradcam_volumes(model, x, class_idx=1)}
    img = _png(plot_gradcam_overlays(x, cams, [0, 2], CLASSES, tmp_path / "gradcam.png",
                                     predictions_by_model={"MoCo": [0, 0]}))
    assert img.shape[1] > img.shape[0]  # 2 rows, 6 slice columns
    with pytest.raises(ValueError, match="one map"):
        plot_gradcam_overlays(x, {"MoCo": cams["MoCo"][:1]}, [0, 2], CLASSES, tmp_path / "bad.png")


def test_load_finetuned_classifier_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = Classifier(build_encoder("rb3d"), 3).eval()
    torch.save({"model": net.state_dict(), "run_info": {"encoder": "rb3d", "classes": list(CLASSES)}},
               tmp_path / "finetune_best.pt")
    loaded, classes = load_finetuned_classifier(tmp_path / "finetune_best.pt")
    x = torch.randn(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    assert classes == list(CLASSES) and not loaded.training
    torch.testing.assert_close(loaded(x), net(x))
    torch.save({"model": net.state_dict(), "run_info": {"encoder": "rb3d", "classes": ["a", "b"]}}, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="do not fit"):
        load_finetuned_classifier(tmp_path / "bad.pt")


def test_baseline_check_says_where_the_fine_tuned_baseline_beats_its_random_feature_probe() -> None:
    from cryomonai.evaluation.stats import baseline_check

    df = pd.DataFrame({"dataset": "d", "method": ["random"] * 4 + ["simclr"] * 2, "label_fraction": [0.1, 0.1, 1.0, 1.0, 0.1, 1.0],
                       "test_accuracy": [0.12, 0.14, 0.50, 0.52, 0.3, 0.6],
                       "linear_probe_accuracy": [0.15, 0.15, 0.20, 0.22, 0.25, 0.4]})
    check = baseline_check(df)
    assert check["passes"].tolist() == [False, True] and check["label_fraction"].tolist() == [0.1, 1.0]
    assert check["finetuned_mean"].round(3).tolist() == [0.13, 0.51] and check["probe_mean"].round(3).tolist() == [0.15, 0.21]
    assert baseline_check(df.drop(columns="linear_probe_accuracy")).empty


def test_the_accuracy_plot_shows_each_pretrained_arms_deployed_classifier(tmp_path: Path, monkeypatch) -> None:
    """With ``deployed_test_accuracy`` in the results, each pretrained arm gets a dotted line at its deployed
    classifier's mean (what a user ships); random init does not, and results without the column draw none."""
    import cryomonai.visualize.results as results

    figures = []
    real = results.save_png
    monkeypatch.setattr(results, "save_png", lambda fig, path, **kw: (figures.append(fig), real(fig, path, **kw))[1])
    df = _results()
    df["deployed_test_accuracy"] = df["test_accuracy"] + np.where(df["method"] == "simclr", 0.05, 0.0)
    _png(plot_accuracy_vs_labels(df, tmp_path / "acc.png", num_classes=len(CLASSES)))
    ax = next(a for a in figures[-1].axes if "0.05" in a.get_title())  # the panel of dataset snr_0.05
    dotted = {line.get_label(): line for line in ax.get_lines() if "deployed" in line.get_label()}
    assert set(dotted) == {"SimCLR deployed", "MoCo deployed"}
    assert all(line.get_linestyle() == ":" for line in dotted.values())
    simclr = dotted["SimCLR deployed"]
    expected = [100 * (np.mean(ACC[(f, "simclr")]) + 0.05) for f in (0.25, 1.0)]
    np.testing.assert_allclose(simclr.get_ydata(), expected)
    _png(plot_accuracy_vs_labels(_results(), tmp_path / "plain.png", num_classes=len(CLASSES)))
    assert not [line for line in figures[-1].axes[0].get_lines() if "deployed" in line.get_label()]


def test_the_accuracy_plot_spreads_fractions_a_decade_apart_on_a_log_axis(tmp_path: Path, monkeypatch) -> None:
    """1 / 10 / 100 % labels on a linear axis would crowd 1 and 10 % into one point: the axis is logarithmic
    where the fractions span a factor of 8 or more, labelled in plain percentages, and linear otherwise."""
    import cryomonai.visualize.results as results

    figures = []
    real = results.save_png
    monkeypatch.setattr(results, "save_png", lambda fig, path, **kw: (figures.append(fig), real(fig, path, **kw))[1])
    df = _results()
    df["label_fraction"] = df["label_fraction"].map({0.25: 0.01, 1.0: 0.1})
    df = pd.concat([df, _results().query("label_fraction == 1.0")])
    _png(plot_accuracy_vs_labels(df, tmp_path / "log.png", num_classes=len(CLASSES)))
    ax = figures[-1].axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "10", "100"]
    random = next(c for c in ax.containers if c.get_label() == "Random init")
    np.testing.assert_allclose(np.asarray(random.lines[0].get_xdata(), float), [1, 10, 100], rtol=0.1)  # dodged by a few per cent only
    _png(plot_accuracy_vs_labels(_results(), tmp_path / "linear.png", num_classes=len(CLASSES)))
    assert figures[-1].axes[0].get_xscale() == "linear"
    assert [t.get_text() for t in figures[-1].axes[0].get_xticklabels()] == ["25", "100"]


def test_the_gain_map_shows_each_methods_gain_over_random_init_with_its_holm_p(tmp_path: Path, monkeypatch) -> None:
    """One panel per dataset, ∞ first; a row per pretrained method, a column per fraction; each cell the mean
    gain in points (the figure's data and its text) and the Holm Welch p, bold where p < 0.05. A grid with
    only random init has no such figure."""
    import cryomonai.visualize.results as results
    from cryomonai.evaluation.stats import arms_vs_baseline

    figures = []
    real = results.save_png
    monkeypatch.setattr(results, "save_png", lambda fig, path, **kw: (figures.append(fig), real(fig, path, **kw))[1])
    df = _results()
    stats = arms_vs_baseline(df, "test_accuracy", "random")
    _png(plot_gain_over_baseline(stats, tmp_path / "gain.png", df))
    panels = [a for a in figures[-1].axes if a.images]  # not the colour bar
    assert [a.get_title() for a in panels] == ["SNR ∞ (snr_inf)", "SNR 0.05 (snr_0.05)"]
    ax = panels[1]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["SimCLR", "MoCo"]  # shared by the panels
    assert [t.get_text() for t in ax.get_xticklabels()] == ["25 %", "100 %"]
    gain = np.asarray(ax.images[0].get_array())
    expected = [[100 * (np.mean(ACC[(f, m)]) - np.mean(ACC[(f, "random")])) for f in (0.25, 1.0)] for m in ("simclr", "moco")]
    np.testing.assert_allclose(gain, expected)
    texts = {t.get_text().split("\n")[0]: t for t in ax.texts}
    block = stats[stats["dataset"] == "snr_0.05"].set_index(["method", "label_fraction"])
    for _, row in block.iterrows():
        text = texts[f"{100 * row['mean_difference']:+.1f}"]
        assert text.get_text().endswith(f"p={row['welch_p_holm']:.2g}")
        assert (text.get_fontweight() == "bold") == (row["welch_p_holm"] < 0.05)
    assert any(t.get_fontweight() == "bold" for t in ax.texts)  # SimCLR at 25 %: +25 points
    df[df["method"] == "random"].to_csv(tmp_path / "results.csv", index=False)
    assert "gain" not in write_report(tmp_path / "results.csv", tmp_path / "only_random", CLASSES)
    with pytest.raises(ValueError, match="only the baseline"):
        plot_gain_over_baseline(stats.iloc[:0], tmp_path / "none.png")


def test_the_figures_show_the_ssl_arm_chosen_on_validation() -> None:
    """The embedding and Grad-CAM figures show the SSL arm "Which method to use" would pick at the fewest
    labels (its deployed classifier's mean validation score), not the one best on test."""
    from cryomonai.experiment.report_grid import _best_method

    rows = [{"dataset": "d", "method": m, "label_fraction": f, "repeat": r, "best_val_accuracy": val,
             "test_accuracy": test, "val_linear_probe_accuracy": probe, "linear_probe_accuracy": 0.0}
            for m, f, val, test, probe in (("random", 0.1, 0.9, 0.9, 0.0), ("simclr", 0.1, 0.30, 0.80, 0.20),
                                           ("moco", 0.1, 0.40, 0.50, 0.20), ("simclr", 1.0, 0.9, 0.9, 0.0))
            for r in range(3)]
    df = pd.DataFrame(rows)
    assert _best_method(df, "d") == "moco"
    df.loc[df["method"] == "simclr", "val_linear_probe_accuracy"] = 0.45  # its probe is deployed and best
    assert _best_method(df, "d") == "simclr"
    assert _best_method(df[df["method"] == "random"], "d") is None
