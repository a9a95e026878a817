"""Pretraining without picks (cryomonai.data.tomo_patches, configs/pretrain_tomograms.json).

On a synthetic tomogram of three complexes (SNR 2): the density sampler draws patches near
particles more often than the uniform one, a mask confines the patches, an OME-Zarr tomogram and a
coarser voxel size give the same patch size, bad inputs get one-line errors, and the bundle's
``pretrain`` with the overlay runs, resumes, and its frozen features classify the known picks
better than the same encoder's random features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import run

from cryomonai.data.extract import read_picks
from cryomonai.data.picks import PickDataset
from cryomonai.data.tomo_patches import TomogramPatchDataset, density_map, memory_estimate
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io import read_mrc, write_mrc
from cryomonai.io.tomogram import tomogram_levels
from cryomonai.networks import build_encoder
from cryomonai.simulate.tomogram import simulate_tomogram

CLASSES = ("1bxn", "3j9i", "1s3x")
CONFIGS = Path(__file__).resolve().parents[1] / "bundles" / "cryo_ssl" / "configs"
SMALL_NET = {"network_def#channels": 8, "network_def#norm": "batch"}


@pytest.fixture(scope="module")
def tomo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Picks STAR of a (48, 192, 192) tomogram at 10 Å, SNR 2, 150 particles (``tomogram.mrc`` next to it)."""
    root = tmp_path_factory.mktemp("tomo_patches")
    return simulate_tomogram(root / "t", (48, 192, 192), n_particles=150, snr=2.0, classes=CLASSES, box=24, seed=0)


def _centres(ds: TomogramPatchDataset, n: int) -> np.ndarray:
    loc = np.stack([ds[i]["location"].numpy() for i in range(n)])
    return (loc[:, :3] + loc[:, 3:]) / 2  # (n, 3) z, y, x


def _near_a_particle(centres: np.ndarray, star: Path, radius: float) -> float:
    picks = read_picks(star).df[["z", "y", "x"]].to_numpy(float)
    d = np.linalg.norm(centres[:, None, :] - picks[None], axis=2).min(axis=1)
    return float((d < radius).mean())


def test_the_density_sampler_draws_particles_more_often_than_empty_ice(tomo: Path) -> None:
    mrc = tomo.parent / "tomogram.mrc"
    torch.manual_seed(0)
    uniform = _near_a_particle(_centres(TomogramPatchDataset([mrc], box=16, sampler="uniform"), 300), tomo, 6)
    torch.manual_seed(0)
    density = _near_a_particle(_centres(TomogramPatchDataset([mrc], box=16, sampler="density"), 300), tomo, 6)
    print(f"patch centres within 6 voxels of a particle: density {density:.2f}, uniform {uniform:.2f}")
    assert density > 2 * uniform and density > uniform + 0.12, (density, uniform)  # measured 0.30 vs 0.10
    score = density_map(read_mrc(mrc)[0], 16)
    assert score.shape == (48, 192, 192) and score.dtype == np.uint8 and score.min() >= 5


def test_a_mask_confines_the_patches_and_items_are_views_ready(tmp_path: Path, tomo: Path) -> None:
    mrc = tomo.parent / "tomogram.mrc"
    mask = np.zeros((48, 192, 192), np.float32)
    mask[20:28, 40:60, 100:120] = 1.0
    write_mrc(tmp_path / "mask.mrc", mask, voxel_size=10.0)
    ds = TomogramPatchDataset(str(mrc), box=16, sampler="mask", masks=[tmp_path / "mask.mrc"], patches_per_epoch=50)
    centres = _centres(ds, 50)
    assert len(ds) == 50
    assert ((centres >= [20, 40, 100]) & (centres <= [28, 60, 120])).all(), centres
    item = ds[0]
    assert tuple(item["image"].shape) == (1, 16, 16, 16) and item["image"].dtype == torch.float32
    assert item["tomogram"] == str(mrc)


def test_an_ome_zarr_tomogram_at_a_coarser_voxel_size(tmp_path: Path, tomo: Path) -> None:
    from test_omezarr import write_ome_zarr

    volume, voxel = read_mrc(tomo.parent / "tomogram.mrc")
    store = write_ome_zarr(tmp_path / "t.zarr", volume, voxel, levels=1)
    from cryomonai.data.tomo_patches import _zarr_level

    _zarr_level.cache_clear()
    ds = TomogramPatchDataset([store], box=8, voxel_size=20.0, sampler="uniform", samples_per_volume=8)
    assert ds.source_box == 16  # 8 voxels of 20 Å from 16 of 10 Å, Fourier-cropped
    loc = ds[0]["location"].numpy()
    assert tuple(ds[0]["image"].shape) == (1, 8, 8, 8) and tuple(loc[3:] - loc[:3]) == (16, 16, 16)
    for i in range(100):  # 13 visits of the queue to the tomogram: its level is read from the store once
        ds[i]
    assert _zarr_level.cache_info().misses == 1 and _zarr_level.cache_info().hits >= 10


def test_bad_inputs_get_one_line_errors(tmp_path: Path, tomo: Path) -> None:
    mrc = tomo.parent / "tomogram.mrc"
    for kwargs, match, kind in [
        ({"tomograms": []}, "lists no tomogram", ConfigError),
        ({"tomograms": [mrc], "sampler": "edges"}, "unknown sampler 'edges'", ConfigError),
        ({"tomograms": [mrc], "sampler": "mask"}, "0 masks for 1 tomograms", ConfigError),
        ({"tomograms": [mrc], "box": 64}, r"smaller than a 64-voxel patch", CryoDataError),
        ({"tomograms": [tmp_path / "missing.mrc"]}, "missing.mrc", CryoDataError),
    ]:
        with pytest.raises(kind, match=match) as err:
            TomogramPatchDataset(**{"box": 16, **kwargs})
        assert "\n" not in str(err.value)
    write_mrc(tmp_path / "small_mask.mrc", np.ones((8, 8, 8), np.float32), voxel_size=10.0)
    with pytest.raises(CryoDataError, match="give a mask of the tomogram's shape"):
        TomogramPatchDataset([mrc], box=16, sampler="mask", masks=[tmp_path / "small_mask.mrc"])


def test_a_run_that_would_not_fit_in_memory_is_refused_before_reading(tomo: Path, monkeypatch) -> None:
    """The density sampler holds ~32 bytes per voxel (TorchIO's float64 map and CDF) + the uint8 map:
    (48, 192, 192) voxels → ~58 MB, refused with 50 MB available; a memory-mapped MRC with the
    uniform sampler needs nothing of the kind and runs."""
    import cryomonai.data.memory as memory

    assert memory.available_memory() > 0  # this machine's, read from /proc/meminfo (and the cgroup)
    mrc = tomo.parent / "tomogram.mrc"
    monkeypatch.setattr(memory, "available_memory", lambda: 50 * 2**20)
    with pytest.raises(CryoDataError) as err:
        TomogramPatchDataset([mrc], box=16, sampler="density")
    text = str(err.value)
    assert text.startswith(f"{mrc} (density sampler): needs about 0.1 GiB of host memory (") and "\n" not in text
    assert "0.05 GiB available" not in text and "0.0 GiB available" in text  # 50 MB, rounded to GiB
    assert "weighted sampler (float64 map + CDF)" in text and "'uniform' sampler" in text and "more memory" in text
    where, parts = memory_estimate(tomogram_levels(mrc), "density")
    assert where == str(mrc) and parts["weighted sampler (float64 map + CDF)"] == 32 * 48 * 192 * 192
    assert parts["density maps (uint8)"] == 48 * 192 * 192 and parts["tomogram levels read whole"] == 0
    assert len(TomogramPatchDataset([mrc], box=16, sampler="uniform", patches_per_epoch=2)) == 2


def _probe(encoder: torch.nn.Module, x: torch.Tensor, y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    encoder.eval()
    with torch.no_grad():
        f = encoder(x).numpy()
    f = (f - f.mean(0)) / (f.std(0) + 1e-6)
    return float(cross_val_score(LogisticRegression(C=0.1, max_iter=2000), f, y, cv=5).mean())


@pytest.mark.slow
def test_pretraining_on_tomograms_runs_resumes_and_its_features_beat_random_ones(tmp_path: Path, tomo: Path) -> None:
    files = [str(CONFIGS / f) for f in ("common.json", "pretrain.json", "methods/simclr.json", "pretrain_tomograms.json")]
    models = tmp_path / "models"
    args = {"bundle_root": str(CONFIGS.parent), "pretrain_tomograms": [str(tomo.parent / "tomogram.mrc")], "box": 16,
            "batch_size": 32, "lr": 1e-3, "ckpt_dir": str(models), "output_dir": str(tmp_path / "out"),
            "progress": False, "train#dataset#patches_per_epoch": 256, **SMALL_NET,
            "train#transforms": {"_target_": "cryomonai.transforms.cryo3d_views", "n_views": 2, "rotation": "so3"}}
    run("pretrain", config_file=files, epochs=10, **args)
    steps = 256 // 32  # per epoch
    assert torch.load(models / "pretrain.pt", weights_only=False)["trainer"]["iteration"] == 10 * steps
    run("pretrain", config_file=files, epochs=20, resume=True, **args)  # continues from epoch 10
    final = torch.load(models / "pretrain.pt", weights_only=False)
    assert final["trainer"]["iteration"] == 20 * steps and final["trainer"]["max_epochs"] == 20
    assert sorted(p.name for p in (tmp_path / "out" / "pretrain").iterdir())  # TensorBoard events written
    picks = PickDataset(tomo, box=16, edge="pad", normalise=True)
    x = torch.stack([picks[i]["image"].as_tensor() for i in range(len(picks))])
    y = np.array([picks[i]["label"] for i in range(len(picks))])
    torch.manual_seed(0)
    random_init = build_encoder("rb3d", channels=8, norm="batch")
    pretrained = build_encoder("rb3d", channels=8, norm="batch")
    pretrained.load_state_dict({k[len("encoder."):]: v for k, v in final["model"].items() if k.startswith("encoder.")})
    before, after = _probe(random_init, x, y), _probe(pretrained, x, y)
    print(f"probe on {len(y)} picks: pretrained {after:.3f}, random {before:.3f}")
    assert after >= before + 0.05, f"probe on the picks: pretrained {after:.3f} vs random {before:.3f}"
