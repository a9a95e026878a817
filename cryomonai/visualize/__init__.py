"""Figures only: slices, Grad-CAM overlays, embeddings, curves, results and confusion matrices.

Every figure is a plain :class:`matplotlib.figure.Figure` written by
:func:`~cryomonai.visualize.figure.save_png` (atomic PNG; no pyplot, no GUI backend, the user's
matplotlib backend untouched). The numbers drawn come from :mod:`cryomonai.evaluation` and
:mod:`cryomonai.simulate`; nothing is computed here.

The interactive pages (``report.html``; Plotly, imported only by them) are not re-exported here:
:mod:`cryomonai.visualize.html` assembles a page, :mod:`cryomonai.visualize.report_predictions`
writes the inference run's, :mod:`cryomonai.visualize.report_grid_html` a grid's.
"""

from cryomonai.visualize.curves import plot_training_curves
from cryomonai.visualize.embedding import plot_embedding, plot_embeddings_before_after, write_embedding_map
from cryomonai.visualize.gallery import cluster_gallery, nearest_members_gallery
from cryomonai.visualize.gradcam import plot_gradcam_overlays
from cryomonai.visualize.preview import preview_montage
from cryomonai.visualize.results import plot_accuracy_vs_labels, plot_confusion_matrices, plot_gain_over_baseline
from cryomonai.visualize.slices import central_slices, slice_montage

__all__ = [
    "central_slices",
    "cluster_gallery",
    "nearest_members_gallery",
    "plot_accuracy_vs_labels",
    "plot_gain_over_baseline",
    "plot_confusion_matrices",
    "plot_embedding",
    "plot_embeddings_before_after",
    "plot_gradcam_overlays",
    "plot_training_curves",
    "preview_montage",
    "slice_montage",
    "write_embedding_map",
]
