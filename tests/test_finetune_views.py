"""Augmentation for supervised fine-tuning (``cryomonai.transforms.finetune_views`` and
``cryomonai.engines.SupervisedPrepareBatch``): one view of ``"image"`` made by the pretraining view
code, per sample in the loader or from the batch on the device; labels untouched; the missing wedge
stays empty; the shift stays within its range; a seed reproduces the views.

Volumes are (C, D, H, W) = (1, z, y, x), batches (B, 1, z, y, x), 16³–24³, fixed seeds. The bundle's
switch (``augment``, ``augment_on_device``) is tested in ``tests/test_bundle.py`` with its tiny dataset.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryomonai.engines import PrepareBatchMemoryFormat, SupervisedPrepareBatch
from cryomonai.errors import ConfigError
from cryomonai.physics.fourier import apply_fourier_filter, bandpass_filter
from cryomonai.physics.wedge import missing_wedge_mask
from cryomonai.transforms import BatchedViews, ViewPipeline, finetune_views

TILT = (-60.0, 60.0)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _wedged(b: int, n: int, seed: int = 0) -> torch.Tensor:
    """(b, 1, n, n, n) smooth noise with the ±60° missing wedge (about y) removed."""
    filt = missing_wedge_mask((n,) * 3, TILT).float() * bandpass_filter((n,) * 3, 0.0, 0.8)
    return apply_fourier_filter(_randn(b, 1, n, n, n, seed=seed), filt)


def _wedge_ratio(v: torch.Tensor) -> torch.Tensor:
    """Per volume of (B, 1, n, n, n): mean Fourier power inside the ±60° missing wedge over that outside it."""
    measured = missing_wedge_mask(tuple(v.shape[-3:]), TILT)
    power = torch.fft.fftn(v[:, 0].double(), dim=(-3, -2, -1)).abs() ** 2
    return power[:, ~measured].mean(1) / power[:, measured].mean(1)


def _blobs(b: int, n: int = 24, sigma: float = 2.0) -> torch.Tensor:
    """(b, 1, n, n, n) isotropic Gaussians at the box centre ((n - 1) / 2 on each axis)."""
    c = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
    r2 = c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2
    return torch.exp(-r2 / (2 * sigma**2)).expand(b, 1, n, n, n).clone()


def _displacement(v: torch.Tensor) -> torch.Tensor:
    """(B, 3) centroid (z, y, x) minus the box centre, of (B, 1, n, n, n) blobs on a constant background."""
    n = v.shape[-1]
    w = (v - v[:, :, :1, :1, :1]).double()[:, 0]  # the corner is background (border padding)
    c = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    mass = w.sum(dim=(1, 2, 3))
    return torch.stack([(w * c.view(shape)).sum(dim=(1, 2, 3)) / mass
                        for shape in ((n, 1, 1), (1, n, 1), (1, 1, n))], 1)


def _augment(views: ViewPipeline, x: torch.Tensor, path: str) -> torch.Tensor:
    """The view of each volume of ``x`` (B, 1, n, n, n), seed 0: per sample (the MONAI pipeline) or batched."""
    if path == "per_sample":
        views.set_random_state(0)
        return torch.stack([torch.as_tensor(views({"image": volume})["image"]) for volume in x])
    torch.manual_seed(0)
    return views.batched()(x)[0]


# ---- per sample ------------------------------------------------------------------------------------


def test_one_view_replaces_the_image_and_every_other_key_passes_through() -> None:
    vol = 3.0 + 2.0 * _randn(1, 16, 16, 16)
    sample = {"image": vol, "label": 7, "name": "p12", "index": 12}
    out = finetune_views().set_random_state(0)(sample)
    assert sorted(out) == ["image", "index", "label", "name"]
    assert (out["label"], out["name"], out["index"]) == (7, "p12", 12)
    image = torch.as_tensor(out["image"])
    assert image.shape == (1, 16, 16, 16) and image.dtype == torch.float32
    assert abs(float(image.mean())) < 1e-4 and float(image.std()) == pytest.approx(1.0, abs=1e-3)
    normalised = (vol - vol.mean()) / vol.std()
    assert not torch.allclose(image, normalised, atol=0.1)  # augmented, not only normalised
    assert torch.equal(sample["image"], vol)  # the dataset's volume is left as it was


def test_defaults_are_so3_with_the_wedge_and_a_one_voxel_shift_and_nothing_else() -> None:
    twin = finetune_views().batched()
    assert isinstance(twin, BatchedViews) and twin.n_views == 1
    assert (twin.rotation, twin.reimpose_wedge, twin.tilt_range, twin.shift_voxels) == ("so3", True, TILT, 1.0)
    assert (twin.crop_prob, twin.noise_prob, twin.lowpass_prob, twin.ctf_prob, twin.normalise) == (0, 0, 0, 0, True)
    beam = finetune_views(rotation="beam", beam_angle_deg=90.0, pixel_size_nm=2.0, shift_voxels=0.0).batched()
    assert (beam.rotation, beam.reimpose_wedge, beam.beam_angle_deg, beam.shift_voxels) == (
        "beam", False, (-90.0, 90.0), 0.0)
    assert beam.microscope["pixel_size_nm"] == 2.0


@pytest.mark.parametrize("path", ["per_sample", "batched"])
def test_so3_augmentation_keeps_the_missing_wedge_empty(path: str) -> None:
    x = _wedged(6, 16)
    assert float(_wedge_ratio(x).max()) < 1e-10
    out = _augment(finetune_views(rotation="so3", shift_voxels=1.5, crop_prob=1.0, noise_prob=1.0), x, path)
    ratio = _wedge_ratio(out)
    assert float(ratio.max()) < 1e-10, ratio  # re-imposed after rotation, shift, crop and noise
    assert float(out.std()) == pytest.approx(1.0, abs=1e-2)  # not wiped out
    unrotated_wedge = _wedge_ratio(finetune_views(rotation="so3", tilt_range=None).batched()(x)[0])
    assert float(unrotated_wedge.min()) > 0.05  # without re-imposing, SO(3) fills the wedge


@pytest.mark.parametrize("path", ["per_sample", "batched"])
@pytest.mark.parametrize("rotation", ["d2", "d2h"])
def test_wedge_turns_are_exact_voxel_permutations_drawn_uniformly(path: str, rotation: str) -> None:
    """``d2`` / ``d2h``: every view is the normalised input with two axes (or, d2h, any) flipped, so it
    keeps the wedge empty without re-imposing it and is as sharp as the data; each group element comes up."""
    x = _wedged(400, 15)  # an odd box too: the turn is about the box centre, no voxel comes from outside
    out = _augment(finetune_views(rotation=rotation, shift_voxels=0.0), x, path)
    normalised = (x - x.mean(dim=(2, 3, 4), keepdim=True)) / x.std(dim=(2, 3, 4), keepdim=True, unbiased=False)
    elements = [(), (0, 1), (0, 2), (1, 2)] + ([(0,), (1,), (2,), (0, 1, 2)] if rotation == "d2h" else [])
    drawn = []
    for i in range(len(x)):
        errors = [float((out[i] - normalised[i].flip([a + 1 for a in axes])).abs().max()) for axes in elements]
        assert min(errors) < 1e-4, (i, errors)
        drawn.append(int(np.argmin(errors)))
    counts = np.bincount(drawn, minlength=len(elements))
    expected = len(x) / len(elements)
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected)), counts  # uniform, no element missing
    assert float(_wedge_ratio(out).max()) < 1e-10
    twin = finetune_views(rotation=rotation).batched()
    assert (twin.rotation, twin.reimpose_wedge) == (rotation, False)


def test_an_unknown_rotation_is_a_one_line_error_naming_the_choices() -> None:
    with pytest.raises(ConfigError, match="d2h"):
        finetune_views(rotation="d4")
    with pytest.raises(ConfigError, match="d2h"):
        BatchedViews(rotation="d4")


@pytest.mark.parametrize("path", ["per_sample", "batched"])
@pytest.mark.parametrize("shift", [0.0, 1.0, 2.5])
def test_the_shift_moves_a_centred_blob_by_at_most_the_set_voxels(path: str, shift: float) -> None:
    """Rotations (SO(3) about the box centre) keep a centred isotropic blob there; only the shift moves it."""
    out = _augment(finetune_views(shift_voxels=shift, tilt_range=None, padding_mode="border"), _blobs(48), path)
    moved = _displacement(out).abs()  # (48, 3) voxels along z, y, x
    assert float(moved.max()) <= shift + 0.02, moved.max()
    if shift > 0:  # uniform in ±shift per axis: some draws come near the edge of the range
        assert float(moved.max()) > 0.8 * shift and float(moved.mean()) == pytest.approx(shift / 2, rel=0.25)


def test_a_seed_reproduces_the_views() -> None:
    vol = _randn(1, 16, 16, 16)

    def view(seed: int) -> torch.Tensor:
        return torch.as_tensor(finetune_views().set_random_state(seed)({"image": vol, "label": 0})["image"])

    torch.testing.assert_close(view(7), view(7), atol=0, rtol=0)
    assert not torch.allclose(view(7), view(8), atol=1e-2)
    batched, x = finetune_views().batched(), _randn(3, 1, 16, 16, 16)
    torch.manual_seed(5)
    first = batched(x)[0]
    torch.manual_seed(5)
    again = batched(x)[0]
    torch.manual_seed(6)
    other = batched(x)[0]
    assert torch.equal(first, again) and not torch.allclose(first, other, atol=1e-2)


def test_collated_views_of_metatensors_keep_labels_in_order() -> None:
    from monai.data import MetaTensor, list_data_collate

    views = finetune_views(crop_prob=0.5).set_random_state(0)
    samples = [{"image": MetaTensor(_randn(1, 16, 16, 16, seed=i)), "label": i} for i in range(6)]
    batch = list_data_collate([views(s) for s in samples])
    assert batch["image"].shape == (6, 1, 16, 16, 16) and batch["label"].tolist() == list(range(6))


def test_bad_keywords_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="unknown keyword.*'n_views'"):
        finetune_views(n_views=2)
    with pytest.raises(ConfigError, match="unknown keyword.*'rotaton'"):
        finetune_views(rotaton="beam")
    with pytest.raises(ConfigError, match="rotation"):
        finetune_views(rotation="xyz")
    with pytest.raises(ConfigError, match="negative"):
        finetune_views(shift_voxels=-1.0)
    with pytest.raises(ConfigError, match="negative"):
        BatchedViews(shift_voxels=-1.0)
    assert isinstance(finetune_views(crop_scale=(0.8, 1.0), noise_factor_range=(1.0, 2.0)), ViewPipeline)


# ---- on the device -----------------------------------------------------------------------------------


def test_prepare_batch_augments_the_image_on_the_device_and_keeps_the_label() -> None:
    batch = {"image": _wedged(4, 16), "label": torch.tensor([2, 0, 1, 2])}
    plain = PrepareBatchMemoryFormat(torch.channels_last_3d)(batch, "cpu")
    same, label = SupervisedPrepareBatch(torch.channels_last_3d)(batch, "cpu")
    assert torch.equal(same, plain[0]) and torch.equal(label, plain[1])  # no views: the plain preparation
    torch.manual_seed(0)
    prepare = SupervisedPrepareBatch(torch.channels_last_3d, finetune_views().batched())
    image, label = prepare(batch, "cpu")
    assert image.shape == (4, 1, 16, 16, 16) and image.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(label, batch["label"])
    assert not torch.allclose(image, batch["image"], atol=0.1)
    assert float(_wedge_ratio(image).max()) < 1e-10
    torch.testing.assert_close(image.mean(dim=(2, 3, 4)), torch.zeros(4, 1), atol=1e-5, rtol=0)


def test_prepare_batch_refuses_views_that_are_not_one() -> None:
    from cryomonai.transforms import cryo3d_views

    prepare = SupervisedPrepareBatch(views=cryo3d_views(rotation="so3").batched())
    with pytest.raises(ConfigError, match="finetune_views"):
        prepare({"image": _randn(2, 1, 12, 12, 12), "label": torch.tensor([0, 1])}, "cpu")
