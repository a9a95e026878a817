"""The linear probe on the validation split: the grid's probe, scored where checks may look."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from monai.utils import set_determinism

from cryomonai.errors import CryoDataError
from cryomonai.evaluation.probes import probe_accuracies, validation_probe
from cryomonai.evaluation.readouts import encoder_features, frozen_readouts
from cryomonai.networks import Classifier, build_encoder


class _Table:
    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df


def _synthetic(n: int = 90, seed: int = 0) -> tuple[np.ndarray, _Table]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    features = rng.normal(size=(n, 8)) + labels[:, None] * 0.8
    split = np.array(["train", "train", "train", "val", "test"] * (n // 5))
    return features, _Table(pd.DataFrame({"split": split, "label_index": labels}))


def test_the_probe_is_the_grids_probe_scored_on_another_split() -> None:
    features, table = _synthetic()
    train = np.flatnonzero(table.df["split"] == "train")
    rows = train[::2]
    scores = probe_accuracies(features, table, rows, ("val", "test"))
    assert scores["test"] == frozen_readouts(features, table, rows)[0]
    val = np.flatnonzero(table.df["split"] == "val")
    assert 0.0 <= scores["val"] <= 1.0 and scores["val"] * len(val) == pytest.approx(round(scores["val"] * len(val)))
    with pytest.raises(CryoDataError, match="outside the labelled training split"):
        probe_accuracies(features, table, np.r_[rows, val[:1]])
    with pytest.raises(CryoDataError, match="no labelled row"):
        probe_accuracies(features, table, rows, ("holdout",))


def test_validation_probe_from_a_checkpoint(tmp_path: Path) -> None:
    from cryomonai.io import read_particle_table
    from cryomonai.simulate.dataset import simulate_dataset
    from cryomonai.simulate.prepare import ensure_dataset

    simulate_dataset(tmp_path / "data", n_per_class=10, box=16, classes=("1bxn", "1qvr", "1s3x"), seed=0, workers=0,
                     progress=False)
    cache = tmp_path / "data" / "cache" / "volumes.npy"
    table = read_particle_table(ensure_dataset(tmp_path / "data" / "particles.star", cache, False, False))
    train = np.flatnonzero(table.df["split"] == "train")
    rows_csv = tmp_path / "labelled_rows.csv"
    pd.DataFrame({"row": train, "label": table.df["label_index"].to_numpy()[train]}).to_csv(rows_csv, index=False)
    random_seed0 = validation_probe(table, cache, "rb3d", "", rows_csv, seed=0)
    features = encoder_features(table, cache, "rb3d", "", seed=0)
    assert random_seed0 == probe_accuracies(features, table, train)["val"]
    set_determinism(0)  # the encoder that seed 0 gives, saved as a checkpoint: the probe reads its weights
    net = Classifier(build_encoder("rb3d"), 3)
    set_determinism(None)
    torch.save({"model": net.state_dict(), "run_info": {"encoder": "rb3d"}}, tmp_path / "encoder.pt")
    assert validation_probe(table, cache, "rb3d", str(tmp_path / "encoder.pt"), train, seed=5) == random_seed0
