"""The experiment grid of Gupta et al. (2022, Table 1 / Figure 8) and its report.

Statistics (:mod:`~cryomonai.experiment.stats`: mean ± std over repeats, two-tailed Student's
t-test against random init), the report (:mod:`~cryomonai.experiment.report`: ``table.md`` in
Table 1's layout, accuracy-vs-labels curves, confusion matrices, embeddings before/after
pretraining) and 3D Grad-CAM (:mod:`~cryomonai.experiment.gradcam`: Figure 8). Importing this
package is light: matplotlib, scipy and MONAI's visualisation load when a function is called.
"""

from cryomonai.experiment.gradcam import gradcam_volumes, load_finetuned_classifier, plot_gradcam_overlays
from cryomonai.experiment.report import (
    plot_accuracy_vs_labels,
    plot_confusion_matrices,
    plot_embeddings_before_after,
    write_report,
    write_table,
)
from cryomonai.experiment.stats import read_results, summarise, ttest_vs_baseline

__all__ = [
    "gradcam_volumes",
    "load_finetuned_classifier",
    "plot_accuracy_vs_labels",
    "plot_confusion_matrices",
    "plot_embeddings_before_after",
    "plot_gradcam_overlays",
    "read_results",
    "summarise",
    "ttest_vs_baseline",
    "write_report",
    "write_table",
]
