"""The no-label readout: encoder features → clusters (k-means / agglomerative) → STAR + figures.

After self-supervised pretraining (Gupta et al. 2022) the encoder's features already separate
structures; without any label, clustering them groups the particles. Here:

* :func:`cluster_features` — features (N, F) → cluster ids 0..K-1 with scikit-learn's ``KMeans``
  or ``AgglomerativeClustering`` (Ward), on L2-normalised features by default (contrastive
  features live on a sphere);
* :func:`embedding_2d` — a 2D map of the features by t-SNE or PCA (scikit-learn);
* :func:`write_embedding_map` — that map as a PNG, coloured by class or cluster;
* :func:`write_clusters` — the ``embed`` run id's last step: ``clusters.star`` / ``.csv`` (every
  input column, ``rlnClassNumber`` = cluster, ``cryoClusterNumber``, ``cryoClusterDistance``),
  ``embedding.png`` and ``gallery.png`` (central slices of the particles nearest each cluster centre).

Example:
    >>> rng = np.random.default_rng(0)
    >>> feats = np.concatenate([rng.normal(c, 0.1, size=(20, 8)) for c in (-1.0, 1.0)])
    >>> labels, _ = cluster_features(feats, 2, normalise=False)
    >>> sorted(np.bincount(labels).tolist())
    [20, 20]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cryomonai.errors import CryoDataError

__all__ = [
    "CLUSTER_METHODS",
    "MAP_METHODS",
    "cluster_features",
    "embedding_2d",
    "write_clusters",
    "write_embedding_map",
]

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
        n_clusters: K (clipped to N).
        method: ``"kmeans"`` (k-means++, 10 starts) or ``"agglomerative"`` (Ward linkage).
        seed: k-means seed.
        normalise: L2-normalise every row first.

    Returns:
        ``(labels (N,) int in 0..K-1, distance (N,) of each particle to its cluster mean)``.

    Raises:
        CryoDataError: unknown method, K < 1, or bad features.
    """
    from sklearn.cluster import AgglomerativeClustering, KMeans

    x = _prepare(features, normalise)
    if method not in CLUSTER_METHODS:
        raise CryoDataError("clustering", f"unknown method {method!r}", f"use one of {list(CLUSTER_METHODS)}")
    if int(n_clusters) < 1:
        raise CryoDataError("clustering", f"n_clusters = {n_clusters}", "give at least 1 cluster")
    k = min(int(n_clusters), len(x))
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
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if method not in MAP_METHODS:
        raise CryoDataError("embedding map", f"unknown method {method!r}", f"use one of {list(MAP_METHODS)}")
    x = _prepare(features, normalise)
    n_comp = min(2, *x.shape)
    if method == "tsne" and len(x) >= 5 and x.shape[1] >= 2:
        exact = len(x) <= 500  # O(N²) but no OpenMP: faster for small N, and immune to busy cores
        out = TSNE(2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca", random_state=seed,
                   method="exact" if exact else "barnes_hut").fit_transform(x)
    else:
        out = PCA(n_comp, random_state=seed).fit_transform(x) if len(x) > 1 else np.zeros((1, n_comp))
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1]))).astype(np.float32)


def write_embedding_map(
    path: str | os.PathLike,
    features: np.ndarray,
    groups: Sequence[int] | np.ndarray | None = None,
    names: Sequence[str] | None = None,
    method: str = "tsne",
    seed: int = 0,
    markers: Sequence[str] | None = None,
    probabilities: np.ndarray | None = None,
) -> Path:
    """Write the 2D map of ``features`` as a PNG, coloured by ``groups`` (or by the argmax of
    ``probabilities`` (N, L), e.g. a classifier's), with ``names`` in the legend."""
    from cryomonai.visualize.embedding import plot_embedding

    if groups is None:
        groups = np.zeros(len(features), int) if probabilities is None else np.asarray(probabilities).argmax(axis=1)
    groups = np.asarray(groups, dtype=int)
    names = list(names) if names is not None else [str(g + 1) for g in range(int(groups.max(initial=0)) + 1)]
    coords = embedding_2d(features, method, seed)
    title = f"{'t-SNE' if method == 'tsne' else 'PCA'} of encoder features, {len(coords)} particles"
    return plot_embedding(coords, groups, names, path, title=title, markers=markers)


def write_clusters(
    output_dir: str | os.PathLike,
    outputs: Any,
    dataset: Any = None,
    n_clusters: int = 10,
    method: str = "kmeans",
    map_method: str = "tsne",
    seed: int = 0,
    per_cluster: int = 8,
    prefix: str = "clusters",
) -> dict[str, Path]:
    """Cluster the collected features and write ``clusters.star``/``.csv``, ``embedding.png``, ``gallery.png``.

    Args:
        output_dir: folder for the files.
        outputs: a :class:`~cryomonai.engines.predictions.ParticlePredictionsWriter` after its run
            (``table``, ``rows`` (N,) table rows, ``features`` (N, F)).
        dataset: the MONAI dataset the features came from (items with ``"index"`` and a
            (1, D, H, W) ``"image"``); needed for the gallery (None: no gallery).
        n_clusters, method, seed: see :func:`cluster_features`.
        map_method: ``"tsne"`` or ``"pca"`` for ``embedding.png``.
        per_cluster: particles shown per cluster in the gallery (the nearest to the centre).
        prefix: base name of the STAR/CSV files.

    Returns:
        the files written, by kind: ``star``, ``csv``, ``embedding``, ``gallery``.
    """
    from cryomonai.data.extract import tomogram_paths
    from cryomonai.engines.predictions import write_star_and_csv
    from cryomonai.io.table import ParticleTable

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels, dist = cluster_features(outputs.features, n_clusters, method, seed)
    names = [f"cluster{c + 1}" for c in range(int(labels.max()) + 1)]
    df = outputs.table.df.loc[outputs.rows].copy()
    markers = None
    if df["label"].notna().any():
        df["cryoInputClassName"] = df["label"].fillna("")
        markers = list(df["cryoInputClassName"])
    df["tomogram"] = tomogram_paths(outputs.table).loc[outputs.rows]
    df["label"] = [names[c] for c in labels]
    df["cryoClusterNumber"], df["cryoClusterDistance"] = labels + 1, dist
    written = write_star_and_csv(ParticleTable(df.reset_index(drop=True), names, outputs.table.source), out, prefix)
    written["embedding"] = write_embedding_map(out / "embedding.png", outputs.features, labels, names, map_method, seed,
                                               markers=markers)
    if dataset is not None:
        written["gallery"] = _gallery(out / "gallery.png", outputs.rows, labels, dist, dataset, names, per_cluster)
    return written


def _gallery(path: Path, rows: np.ndarray, labels: np.ndarray, dist: np.ndarray, dataset: Any, names: list[str],
             per_cluster: int) -> Path:
    """The members nearest each cluster centre, read back from ``dataset`` (its items' ``"index"`` = table row)."""
    import torch

    from cryomonai.visualize.gallery import cluster_gallery

    position = {int(item["index"]): pos for pos, item in enumerate(dataset.data)}
    volumes = {}
    for c, name in enumerate(names):
        members = np.flatnonzero(labels == c)
        nearest = members[np.argsort(dist[members], kind="stable")[:per_cluster]]
        images = [dataset[position[int(rows[i])]]["image"] for i in nearest]  # (1, D, H, W) each
        volumes[f"{name} (n={len(members)})"] = [np.asarray(torch.as_tensor(im).detach().cpu())[0] for im in images]
    return cluster_gallery(volumes, path, title="particles nearest each cluster centre: central xy above xz")
