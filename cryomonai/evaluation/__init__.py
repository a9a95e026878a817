"""Evaluation: statistics of the experiment grid, readouts of frozen features, Grad-CAM, clustering.

* :mod:`~cryomonai.evaluation.stats` — mean ± std over repeats, the paper's t-test against random init,
  Student/Welch/paired side by side with Holm's correction, fine-tuned vs own probe per repeat;
* :mod:`~cryomonai.evaluation.readouts` — linear probe and kNN on frozen encoder features;
* :mod:`~cryomonai.evaluation.probes` — that linear probe scored on any split (validation, from a checkpoint);
* :mod:`~cryomonai.evaluation.gradcam` — 3D Grad-CAM maps of fine-tuned classifiers;
* :mod:`~cryomonai.evaluation.embedding` — clusters and 2D maps of features (the ``embed`` run id);
* :mod:`~cryomonai.evaluation.context` — the context control: boxes without their target, and whether
  a classifier's accuracy on them stays at chance.

Figures of all of these are drawn by :mod:`cryomonai.visualize`.
"""

from cryomonai.evaluation.context import context_table, context_valid
from cryomonai.evaluation.embedding import Clusters, cluster_features, cluster_particles, embedding_2d
from cryomonai.evaluation.gradcam import gradcam_volumes, load_finetuned_classifier
from cryomonai.evaluation.probes import probe_accuracies, validation_probe
from cryomonai.evaluation.readouts import encoder_features, frozen_readouts
from cryomonai.evaluation.stats import (
    arms_vs_baseline,
    compare_arms,
    holm,
    own_probe_check,
    probe_margins,
    read_results,
    seconds_summary,
    summarise,
    ttest_vs_baseline,
)

__all__ = [
    "Clusters",
    "arms_vs_baseline",
    "compare_arms",
    "holm",
    "own_probe_check",
    "probe_accuracies",
    "probe_margins",
    "cluster_features",
    "cluster_particles",
    "context_table",
    "context_valid",
    "embedding_2d",
    "encoder_features",
    "frozen_readouts",
    "gradcam_volumes",
    "load_finetuned_classifier",
    "read_results",
    "seconds_summary",
    "summarise",
    "ttest_vs_baseline",
    "validation_probe",
]
