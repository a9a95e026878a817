"""The no-label readout: clustering and 2D maps of features, figures, and the ``embed`` run id
(``cryomonai embed``) on tomogram + picks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
import torch
from sklearn.metrics import adjusted_rand_score

from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.evaluation.embedding import cluster_features, embedding_2d
from cryomonai.visualize.embedding import write_embedding_map
from cryomonai.visualize.gallery import cluster_gallery

CLASSES = ("1bxn", "3j9i", "1s3x")
PNG = b"\x89PNG\r\n\x1a\n"


def _blobs(sizes=(30, 20, 10), dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well separated groups of features: group g around a random direction, ±5 % noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    truth = np.repeat(np.arange(len(sizes)), sizes)
    return centres[truth] + 0.05 * rng.normal(size=(len(truth), dim)), truth


@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])
def test_clustering_recovers_separated_groups_numbered_by_size(method: str) -> None:
    feats, truth = _blobs()
    labels, dist = cluster_features(feats, 3, method)
    assert adjusted_rand_score(truth, labels) == 1.0
    assert np.bincount(labels).tolist() == [30, 20, 10]  # cluster 0 is the largest
    assert dist.shape == (60,) and (dist >= 0).all() and dist.max() < 0.1  # unit-normalised, tight groups
    # the same on shuffled rows: a deterministic function of the features
    perm = np.random.default_rng(1).permutation(60)
    assert np.array_equal(cluster_features(feats[perm], 3, method)[0], labels[perm])


def test_clustering_input_errors(caplog) -> None:
    feats, _ = _blobs()
    with caplog.at_level("WARNING", logger="cryomonai"):
        assert len(set(cluster_features(feats[:2], 5)[0])) == 2  # K clipped to N, and said
    assert "5 clusters asked for 2 particles" in caplog.text
    with pytest.raises(ConfigError, match="unknown method 'dbscan'"):
        cluster_features(feats, 3, "dbscan")
    with pytest.raises(CryoDataError, match="NaN"):
        cluster_features(np.full((4, 3), np.nan), 2)


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embedding_map_separates_groups(method: str) -> None:
    feats, truth = _blobs()
    xy = embedding_2d(feats, method)
    assert xy.shape == (60, 2) and np.isfinite(xy).all()
    centres = np.stack([xy[truth == g].mean(0) for g in range(3)])
    spread = max(np.linalg.norm(xy[truth == g] - centres[g], axis=1).max() for g in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)]
    assert min(gaps) > spread  # groups do not overlap in the map
    assert embedding_2d(feats[:3], method).shape == (3, 2)  # too few for t-SNE: PCA


def test_figures_are_written(tmp_path: Path) -> None:
    feats, truth = _blobs()
    png = write_embedding_map(tmp_path / "map.png", feats, truth, ["a", "b", "c"], "pca", markers=list("xy" * 30))
    assert png.read_bytes()[:8] == PNG
    vols = [np.random.default_rng(i).normal(size=(8, 8, 8)) for i in range(3)]
    gallery = cluster_gallery({"cluster 1 (n=3)": vols, "cluster 2 (n=1)": vols[:1]}, tmp_path / "g" / "gallery.png")
    assert gallery.read_bytes()[:8] == PNG


@pytest.fixture(scope="module")
def tomogram_and_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small noise-free tomogram (40, 96, 96) with 12 picks, and a random-init RB3D (8 channels) saved
    as the bundle saves a fine-tuned classifier."""
    from cryomonai.networks import Classifier, build_encoder
    from cryomonai.simulate.tomogram import simulate_tomogram

    root = tmp_path_factory.mktemp("embed")
    picks = simulate_tomogram(root / "tomo", (40, 96, 96), n_particles=12, snr=math.inf, classes=CLASSES, box=24)
    torch.manual_seed(0)
    model = Classifier(build_encoder("rb3d", channels=8, norm="batch"), num_classes=3)
    ckpt = root / "finetune_best.pt"
    torch.save({"model": model.state_dict(), "run_info": {"task": "finetune", "encoder": "rb3d",
                                                          "classes": list(CLASSES)}}, ckpt)
    return {"root": root, "picks": picks, "checkpoint": ckpt, "encoder": model.encoder.eval()}


def test_embed_command_writes_clusters_star_and_figures(tomogram_and_checkpoint: dict) -> None:
    from cryomonai.cli import embed
    from cryomonai.data.picks import PickDataset
    from cryomonai.transforms import eval_transform

    t = tomogram_and_checkpoint
    out = t["root"] / "out"
    star = embed(str(t["picks"]), str(t["checkpoint"]), out=str(out), n_clusters=3, box=24, edge="pad", progress=False,
                 batch_size=4, embedding_map="pca", amp=False,  # float32, as the reference below
                 **{"network_def#channels": 8, "network_def#norm": "batch"})
    blocks = starfile.read(star, always_dict=True)
    c, picks = blocks["particles"], starfile.read(t["picks"], always_dict=True)["particles"]
    assert len(c) == len(picks) == 12
    assert list(blocks["classes"]["cryoClassName"]) == ["cluster1", "cluster2", "cluster3"]
    assert (c["rlnClassNumber"] == c["cryoClusterNumber"]).all() and set(c["cryoClusterNumber"]) <= {1, 2, 3}
    sizes = np.bincount(c["cryoClusterNumber"])[1:]
    np.testing.assert_array_equal(sizes, sorted(sizes, reverse=True))  # cluster 1 is the largest
    assert list(c["cryoInputClassName"]) == [CLASSES[k - 1] for k in picks["rlnClassNumber"]]  # input kept
    np.testing.assert_array_equal(c["rlnCoordinateZ"], picks["rlnCoordinateZ"])
    assert len(pd.read_csv(out / "clusters.csv")) == 12
    # the embeddings are the encoder's features of the (on-the-fly) subtomograms, row by row
    feats = np.load(out / "embeddings.npy")
    ds = PickDataset(t["picks"], box=24, edge="pad", transform=eval_transform())
    with torch.no_grad():
        expected = t["encoder"](torch.stack([ds[i]["image"].as_tensor() for i in range(3)]))
    np.testing.assert_allclose(feats[:3], expected.numpy(), rtol=1e-4, atol=1e-5)
    labels, _ = cluster_features(feats, 3)
    np.testing.assert_array_equal(labels + 1, c["cryoClusterNumber"])
    for name in ("embedding.png", "gallery.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert len(pd.read_csv(out / "rejected_picks.csv")) == 0


def test_embed_reads_the_encoder_of_a_pretraining_checkpoint(tomogram_and_checkpoint: dict) -> None:
    """The no-label default: ``models/pretrain.pt`` of an SSL method (encoder + heads + queue)."""
    from cryomonai.cli import embed
    from cryomonai.data.picks import PickDataset
    from cryomonai.networks import build_encoder
    from cryomonai.ssl import build_method
    from cryomonai.transforms import eval_transform

    t = tomogram_and_checkpoint
    torch.manual_seed(1)
    method = build_method("moco", build_encoder("rb3d", channels=8, norm="batch"), queue_size=16)
    ckpt = t["root"] / "pretrain.pt"
    torch.save({"model": method.state_dict(), "run_info": {"task": "pretrain", "encoder": "rb3d", "method": "moco"}},
               ckpt)
    out = t["root"] / "out_pretrain"
    embed(str(t["picks"]), str(ckpt), out=str(out), n_clusters=2, box=24, edge="pad", progress=False,
          method="agglomerative", embedding_map="pca", amp=False,  # float32, as the reference below
          **{"network_def#channels": 8, "network_def#norm": "batch"})
    clusters = starfile.read(out / "clusters.star", always_dict=True)["particles"]
    assert len(clusters) == 12 and set(clusters["rlnClassNumber"]) == {1, 2}
    ds = PickDataset(t["picks"], box=24, edge="pad", transform=eval_transform())
    with torch.no_grad():
        expected = method.encoder.eval()(torch.stack([ds[i]["image"].as_tensor() for i in range(2)]))
    np.testing.assert_allclose(np.load(out / "embeddings.npy")[:2], expected.numpy(), rtol=1e-4, atol=1e-5)
