"""Same seed and config → same result, whatever else the process did.

What the per-module tests already check is not repeated here (``test_data.py``: a split or label
subset is a function of the seed; ``test_simulate.py``: a dataset is a function of the seed, not
of the worker processes; ``test_transforms.py``: ``set_random_state`` reproduces the views). This
module checks what a *run* adds on top:

* splits and label subsets do not depend on the process (hash seed, global random state);
* a simulated dataset does not depend on the caller's global random state or thread count (every
  volume's voxels and header, the clean volumes, the tables);
* the augmented views of an epoch come from ``(seed, epoch)`` alone, through MONAI's data loader,
  with and without worker processes (what :class:`cryomonai.engines.RNGState` relies on);
* a tiny fine-tuning through the bundle, run twice, gives the same metrics and weights.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "cryo_ssl"
CLASSES = ("1bxn", "1qvr")
LABELS = ["1bxn"] * 7 + ["1qvr"] * 12 + ["5mrc"] * 5 + [None, "", -1]  # names, and three kinds of unlabelled


def _simulate(out: Path, threads: int, global_seed: int) -> Path:
    """2 classes × 6 subtomograms of 16³ in this process, after disturbing the global random state."""
    from cryomonai.simulate.dataset import simulate_dataset

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    random.seed(global_seed)
    np.random.seed(global_seed)
    torch.manual_seed(global_seed)
    try:
        simulate_dataset(out, n_per_class=6, box=16, classes=CLASSES, seed=0, workers=0, progress=False)
    finally:
        torch.set_num_threads(before)
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _simulate(tmp_path_factory.mktemp("determinism") / "data", threads=2, global_seed=1)


# ---- splits and label subsets --------------------------------------------------------------------

_SPLITS = """
import json, random, sys
import numpy as np
random.seed(99); np.random.seed(99); np.random.random(1000)
from cryomonai.data import label_subset, stratified_split
labels = json.loads(sys.argv[1])
out = {f"split{s}": stratified_split(labels, seed=s).tolist() for s in (0, 7)}
out.update({f"subset{s}_{f}": label_subset(labels, f, seed=s).tolist() for s in (0, 7) for f in (0.25, 0.5, 1.0)})
print(json.dumps(out))
"""


def test_splits_and_label_subsets_do_not_depend_on_the_process() -> None:
    """Two processes with other hash seeds and global random states give this process's splits."""
    from cryomonai.data import label_subset, stratified_split

    here = {f"split{s}": stratified_split(LABELS, seed=s).tolist() for s in (0, 7)}
    here.update({f"subset{s}_{f}": label_subset(LABELS, f, seed=s).tolist() for s in (0, 7) for f in (0.25, 0.5, 1.0)})
    assert here["split0"] != here["split7"] and here["subset0_0.25"] != here["subset7_0.25"]  # the seed matters
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", _SPLITS, json.dumps(LABELS)], env=env, capture_output=True,
                              text=True, timeout=120, check=True)
        assert json.loads(done.stdout) == here


# ---- simulation ----------------------------------------------------------------------------------


def _mrc(path: Path) -> tuple[bytes, bytes]:
    """Voxel bytes and header bytes of an MRC file, without the text labels (mrcfile stamps the time there)."""
    with mrcfile.open(path) as mrc:
        header = mrc.header.copy()
        header["label"] = b""
        return mrc.data.tobytes(), header.tobytes()


def test_simulation_does_not_depend_on_the_global_random_state_or_threads(dataset: Path, tmp_path: Path) -> None:
    other = _simulate(tmp_path / "data", threads=1, global_seed=2)
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    volumes = [f for f in files if f.suffix == ".mrc"]
    assert len(volumes) == 12
    for name in volumes:
        assert _mrc(dataset / name) == _mrc(other / name), name
    for name in ("clean.npy", "particles.csv", "simulation.json"):
        assert (dataset / name).read_bytes() == (other / name).read_bytes(), name
    star = [(d / "particles.star").read_text().split("\n", 1)[1] for d in (dataset, other)]  # after the time stamp
    assert star[0] == star[1]


# ---- augmented views of an epoch -----------------------------------------------------------------


def _epoch(loader, rng, epoch: int) -> list[torch.Tensor]:
    rng.reseed(epoch, loader)
    return [torch.cat([batch["view_0"], batch["view_1"]]) for batch in loader]


@pytest.mark.parametrize("workers", [0, 2])
def test_the_views_of_an_epoch_come_from_seed_and_epoch_alone(dataset: Path, tmp_path: Path, workers: int) -> None:
    from monai.data import DataLoader

    from cryomonai.data import VolumeStackDataset
    from cryomonai.engines import RNGState
    from cryomonai.transforms import paper_views

    volumes = VolumeStackDataset(dataset / "particles.star", tmp_path / "volumes.npy",
                                 transform=paper_views(crop_prob=1.0, affine_prob=1.0), progress=False)
    loader = DataLoader(volumes, batch_size=4, shuffle=True, num_workers=workers)
    rng = RNGState(seed=5)
    first = _epoch(loader, rng, epoch=2)
    _epoch(loader, rng, epoch=1)  # another epoch, and other draws, in between
    torch.rand(10), np.random.rand(10), random.random()
    again = _epoch(loader, rng, epoch=2)
    assert len(first) == 3 and all(torch.equal(a, b) for a, b in zip(first, again))
    other = _epoch(loader, rng, epoch=3)
    assert not any(torch.equal(a, b) for a, b in zip(first, other))
    assert not any(torch.equal(a, b) for a, b in zip(first, _epoch(loader, RNGState(seed=6), epoch=2)))


# ---- a fine-tuning run, twice --------------------------------------------------------------------


def _finetune(data: Path, run: Path, cache: Path) -> tuple[dict, dict, dict]:
    """Fine-tune 2 epochs from random weights on half the labels; (val metrics, train metrics, weights)."""
    from monai.bundle.scripts import create_workflow

    workflow = create_workflow(
        config_file=[str(BUNDLE / "configs" / f) for f in ("common.json", "finetune.json")], run_id="finetune",
        bundle_root=str(BUNDLE), dataset_dir=str(data), cache_path=str(cache), ckpt_dir=str(run / "models"),
        output_dir=str(run / "eval"), simulate=False, progress=False, box=16, batch_size=2, epochs=2, pretrained="", label_fraction=0.5,
        num_workers=0, **{"network_def#channels": 8},
    )
    workflow.run()
    workflow.finalize()
    parsed = workflow.parser.get_parsed_content
    weights = torch.load(run / "models" / "finetune_final.pt", weights_only=True)["model"]
    return dict(parsed("validate#evaluator").state.metrics), dict(parsed("train#trainer").state.metrics), weights


def test_a_finetuning_run_twice_gives_the_same_metrics_and_weights(dataset: Path, tmp_path: Path) -> None:
    val, train, weights = _finetune(dataset, tmp_path / "first", tmp_path / "volumes.npy")
    torch.rand(100), np.random.rand(100)  # whatever happens between two runs
    val_again, train_again, weights_again = _finetune(dataset, tmp_path / "second", tmp_path / "volumes.npy")
    assert "val_accuracy" in val and "train_accuracy" in train
    assert val == val_again and train == train_again
    assert weights.keys() == weights_again.keys()
    assert all(torch.equal(v, weights_again[k]) for k, v in weights.items())
