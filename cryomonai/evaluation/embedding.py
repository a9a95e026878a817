"""The no-label readout: encoder features → clusters (k-means / agglomerative) and 2D maps.

After self-supervised pretraining (Gupta et al. 2022) the encoder's features already separate
structures; without any label, clustering them groups the particles. Here:

* :func:`cluster_features` — features (N, F) → cluster ids 0..K-1 with scikit-learn's ``KMeans``
  or ``AgglomerativeClustering`` (Ward), on L2-normalised features by default (contrastive
  features live on a sphere);
* :func:`embedding_2d` — a 2D map of the features by t-SNE or PCA (scikit-learn);
* :func:`cluster_particles` — the ``embed`` run id's clustering of the particles a
  :class:`~cryomonai.engines.predictions.ParticlePredictionsWriter` collected, as :class:`Clusters`:
  the input table with ``rlnClassNumber`` = cluster, ``cryoClusterNumber`` and
  ``cryoClusterDistance`` (written as ``clusters.star`` / ``.csv`` by
  :func:`cryomonai.io.write_star_and_csv`), drawn by :mod:`cryomonai.visualize.embedding` and
  :mod:`cryomonai.visualize.gallery` (``embedding.png``, ``gallery.png``).

Example:
    >>> rng = np.random.default_rng(0)
    >>> feats = np.concatenate([rng.normal(c, 0.1, size=(20, 8)) for c in (-1.0, 1.0)])
    >>> labels, _ = cluster_features(feats, 2, normalise=False)
    >>> sorted(np.bincount(labels).tolist())
    [20, 20]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from cryomonai.data.extract import tomogram_paths
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io.predictions import INPUT_CLASS
from cryomonai.io.table import ParticleTable

__all__ = ["CLUSTER_METHODS", "MAP_METHODS", "Clusters", "cluster_features", "cluster_particles", "embedding_2d"]

CLUSTER_METHODS: tuple[str, ...] = ("kmeans", "agglomerative")
MAP_METHODS: tuple[str, ...] = ("tsne", "pca")


def _prepare(features: np.ndarray, normalise: bool) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise CryoDataError("features", f"expected a non-empty (N, F) array, got shape {x.shape}",
                            "embed some particles")
    if not np.isfinite(x).all():
        raise CryoDataError("features", "contain NaN/Inf", "check the checkpoint and the input volumes")
    if normalise:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def cluster_features(
    features: np.ndarray, n_clusters: int, method: str = "kmeans", seed: int = 0, normalise: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster features (N, F) into ``n_clusters`` groups.

    Clusters are renumbered by decreasing size (0 = largest), so the numbering is stable.

    Args:
        features: one row per particle.
        n_clusters: K (clipped to N, with a warning).
        method: ``"kmeans"`` (k-means++, 10 starts) or ``"agglomerative"`` (Ward linkage).
        seed: k-means seed.
        normalise: L2-normalise every row first.

    Returns:
        ``(labels (N,) int in 0..K-1, distance (N,) of each particle to its cluster mean)``.

    Raises:
        ConfigError: unknown method, K < 1.
        CryoDataError: bad features.
    """
    x = _prepare(features, normalise)
    if method not in CLUSTER_METHODS:
        raise ConfigError("clustering", f"unknown method {method!r}", f"use one of {list(CLUSTER_METHODS)}")
    if int(n_clusters) < 1:
        raise ConfigError("clustering", f"n_clusters = {n_clusters}", "give at least 1 cluster")
    k = min(int(n_clusters), len(x))
    if k < int(n_clusters):
        logging.getLogger(__name__).warning("%d clusters asked for %d particles: %d clusters of one particle each "
                                            "(give --n_clusters below the number of particles)", n_clusters, len(x), k)
    if method == "kmeans":
        raw = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    else:
        raw = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x) if k > 1 else np.zeros(len(x), int)
    sizes = np.bincount(raw, minlength=k)
    rank = np.empty(k, dtype=np.int64)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(k)
    labels = rank[raw]
    centres = np.stack([x[labels == c].mean(axis=0) if (labels == c).any() else np.zeros(x.shape[1]) for c in range(k)])
    return labels, np.linalg.norm(x - centres[labels], axis=1)


def embedding_2d(features: np.ndarray, method: str = "tsne", seed: int = 0, normalise: bool = True) -> np.ndarray:
    """A 2D map (N, 2) of features (N, F): t-SNE (PCA-initialised) or the first two principal components.

    t-SNE's perplexity is ``min(30, (N - 1) / 3)``, exact up to 500 particles, Barnes-Hut above;
    with fewer than 5 particles, or features of one dimension, PCA is used (zeros pad a missing
    second axis).
    """
    if method not in MAP_METHODS:
        raise ConfigError("embedding map", f"unknown method {method!r}", f"use one of {list(MAP_METHODS)}")
    x = _prepare(features, normalise)
    n_comp = min(2, *x.shape)
    if method == "tsne" and len(x) >= 5 and x.shape[1] >= 2:
        exact = len(x) <= 500  # O(N²) but no OpenMP: faster for small N, and immune to busy cores
        out = TSNE(2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca", random_state=seed,
                   method="exact" if exact else "barnes_hut").fit_transform(x)
    else:
        out = PCA(n_comp, random_state=seed).fit_transform(x) if len(x) > 1 else np.zeros((1, n_comp))
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1]))).astype(np.float32)


@dataclass(frozen=True)
class Clusters:
    """The particles' clusters (rows in the order of the collected features).

    Attributes:
        labels: (N,) cluster index 0..K-1 (0 = largest).
        distance: (N,) distance of each particle to its cluster mean (normalised features).
        names: the K cluster names, ``cluster1`` …
        table: the clustered rows of the input table: every input column, ``label`` = cluster name,
            ``cryoClusterNumber`` (1-based), ``cryoClusterDistance``, the input's own class in
            ``cryoInputClassName`` (when it had labels) and absolute tomogram paths.
        markers: (N,) the input's class names, or None for an unlabelled input.
    """

    labels: np.ndarray
    distance: np.ndarray
    names: list[str]
    table: ParticleTable
    markers: list[str] | None


def cluster_particles(outputs: Any, n_clusters: int = 10, method: str = "kmeans", seed: int = 0) -> Clusters:
    """Cluster the features a writer collected (see :func:`cluster_features`).

    Args:
        outputs: a :class:`~cryomonai.engines.predictions.ParticlePredictionsWriter` after its run
            (``table``, ``rows`` (N,) table rows, ``features`` (N, F)).
        n_clusters, method, seed: see :func:`cluster_features`.
    """
    labels, dist = cluster_features(outputs.features, n_clusters, method, seed)
    names = [f"cluster{c + 1}" for c in range(int(labels.max()) + 1)]
    df = outputs.table.df.loc[outputs.rows].copy()
    markers = None
    if df["label"].notna().any():
        df[INPUT_CLASS] = df["label"].fillna("")
        markers = list(df[INPUT_CLASS])
    df["tomogram"] = tomogram_paths(outputs.table).loc[outputs.rows]
    df["label"] = [names[c] for c in labels]
    df["cryoClusterNumber"], df["cryoClusterDistance"] = labels + 1, dist
    table = ParticleTable(df.reset_index(drop=True), names, outputs.table.source)
    return Clusters(labels, dist, names, table, markers)
