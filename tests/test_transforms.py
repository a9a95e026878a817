"""Tests of cryomonai.transforms: axis conventions, wedge physics, SNR, views and reproducibility.

Volumes are (C, D, H, W) = (1, z, y, x), 16³–32³, fixed seeds.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from monai.transforms import Affine, RandAffined

from cryomonai.errors import ConfigError
from cryomonai.physics.fourier import apply_fourier_filter, bandpass_filter, fourier_grid
from cryomonai.physics.wedge import missing_wedge_mask
import cryomonai.transforms as cryo_transforms
from cryomonai.transforms import (
    ImposeMissingWedge,
    MultiViewd,
    RandArrayd,
    RandCTF,
    RandCTFd,
    RandInPlaneAffine,
    RandInPlaneAffined,
    RandLowPass,
    RandResizedCropd,
    RandShift,
    RandShiftd,
    RandSNRJitter,
    RandSO3Rotate,
    RandSO3Rotated,
    beam_rotation,
    cryo3d_views,
    eval_transform,
    paper_views,
)

TILT = (-60.0, 60.0)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _wedged_noise(n: int, seed: int = 0, high: float = 1.0) -> torch.Tensor:
    """(1, n, n, n) noise with the (-60, 60) wedge (about y) removed, low-passed at ``high``·Nyquist."""
    filt = missing_wedge_mask((n,) * 3, TILT).float() * bandpass_filter((n,) * 3, 0.0, high)
    return apply_fourier_filter(torch.randn(1, n, n, n, generator=_gen(seed)), filt)


def _wedge_ratio(vol: torch.Tensor, measured: torch.Tensor) -> float:
    """Mean Fourier power where ``measured`` is False over where it is True (DC excluded)."""
    p = torch.fft.fftn(torch.as_tensor(vol)[0].double()).abs() ** 2
    p[0, 0, 0] = 0.0
    return float(p[~measured].mean() / p[measured].mean())


def _rotated_wedge(n: int, angle_deg: float) -> torch.Tensor:
    """Measured-region mask of the (-60, 60) wedge after MONAI's rotation by ``angle_deg`` about z."""
    kz, ky, kx = fourier_grid((n,) * 3)
    t = math.radians(angle_deg)
    kx_rot = math.cos(t) * kx + math.sin(t) * ky  # the tilt axis turns with the data
    kz, kx_rot = torch.broadcast_tensors(kz, kx_rot)
    return (kz.abs() <= math.tan(math.radians(TILT[1])) * kx_rot.abs() + 1e-9).expand(n, n, n)


def _principal_angle_deg(img2d: torch.Tensor) -> float:
    """Angle of the principal axis of a non-negative 2-D image (y, x), degrees from +x, in (-90, 90]."""
    w = img2d.clamp(min=0).double()
    ys, xs = torch.meshgrid(torch.arange(w.shape[0]), torch.arange(w.shape[1]), indexing="ij")
    m = w.sum()
    cy, cx = (w * ys).sum() / m, (w * xs).sum() / m
    cyy = (w * (ys - cy) ** 2).sum() / m
    cxx = (w * (xs - cx) ** 2).sum() / m
    cxy = (w * (ys - cy) * (xs - cx)).sum() / m
    return math.degrees(0.5 * math.atan2(2 * float(cxy), float(cxx - cyy)))


# --- MONAI's axis ordering for (C, z, y, x) ------------------------------------------------------


def test_monai_rotate_params_first_entry_is_about_z():
    vol = torch.rand(1, 6, 8, 8, generator=_gen())
    out = Affine(rotate_params=(math.pi / 2, 0, 0), padding_mode="zeros", image_only=True)(vol)
    torch.testing.assert_close(torch.as_tensor(out), torch.rot90(vol, k=-1, dims=(-2, -1)), atol=1e-5, rtol=0)
    out = Affine(rotate_params=(0, math.pi / 2, 0), padding_mode="zeros", image_only=True)(vol[:, :, :6, :6])
    assert not torch.allclose(torch.as_tensor(out)[:, 0], torch.as_tensor(out)[:, 1])  # (z, x) rotation mixes z


def test_randaffined_with_view_keys_makes_identical_views():
    """The SSL trap MultiViewd exists for: one dictionary transform, one draw for all keys."""
    vol = torch.rand(1, 4, 12, 12, generator=_gen())
    t = RandAffined(["view_0", "view_1"], prob=1.0, rotate_range=(1.0, 0, 0)).set_random_state(0)
    out = t({"view_0": vol, "view_1": vol.clone()})
    torch.testing.assert_close(out["view_0"], out["view_1"])


# --- paper mode: 2-D transforms, identical for every z-slice -------------------------------------


def test_paper_views_keep_identical_z_slices_identical():
    plane = torch.rand(1, 1, 24, 24, generator=_gen(1))
    vol = plane.expand(1, 6, 24, 24).clone()
    views = paper_views(n_views=2, crop_prob=1.0, affine_prob=1.0).set_random_state(3)
    out = views({"image": vol})
    for key in ("view_0", "view_1"):
        v = torch.as_tensor(out[key])
        assert not torch.allclose(v[0, 0], (plane[0, 0] - plane.mean()) / plane.std(), atol=1e-3)  # transformed
        torch.testing.assert_close(v, v[:, :1].expand_as(v), atol=1e-5, rtol=0)


def test_paper_crop_and_affine_keep_the_z_profile():
    profile = torch.linspace(-1.0, 2.0, 8)
    vol = profile[None, :, None, None].expand(1, 8, 20, 20).clone()  # constant in (y, x)
    crop = RandResizedCropd("image", prob=1.0, spatial_axes=(1, 2)).set_random_state(0)
    torch.testing.assert_close(torch.as_tensor(crop({"image": vol})["image"]), vol, atol=1e-5, rtol=0)
    for seed in range(5):
        out = torch.as_tensor(RandInPlaneAffined("image", prob=1.0).set_random_state(seed)({"image": vol})["image"])
        torch.testing.assert_close(out[0, :, 10, 10], profile, atol=1e-5, rtol=0)  # centre column


def test_paper_affine_rotates_about_z_never_beyond_45_degrees():
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    rod = torch.exp(-((xs - 15.5) ** 2) / (2 * 5.0**2) - (ys - 15.5) ** 2 / (2 * 1.5**2))  # along x
    vol = rod[None, None].expand(1, 3, 32, 32).clone()
    assert abs(_principal_angle_deg(rod)) < 0.5
    affine = RandInPlaneAffine(prob=1.0).set_random_state(0)
    angles = []
    for _ in range(40):
        out = torch.as_tensor(affine(vol))
        torch.testing.assert_close(out, out[:, :1].expand_as(out), atol=1e-5, rtol=0)  # only about z
        measured = _principal_angle_deg(out[0, 1])
        assert abs(abs(measured) - abs(affine.angle_deg)) < 1.5  # the drawn angle is the rotation
        angles.append(measured)
    assert max(abs(a) for a in angles) <= 45.5
    assert max(abs(a) for a in angles) > 35.0  # the range is used


def test_resized_crop_3d_keeps_shape_and_changes_the_volume():
    vol = torch.rand(1, 16, 16, 16, generator=_gen())
    out = RandResizedCropd("image", prob=1.0, scale=(0.5, 0.5)).set_random_state(0)({"image": vol})["image"]
    assert out.shape == vol.shape and out.dtype == torch.float32
    assert not torch.allclose(torch.as_tensor(out), vol)


# --- rotations ------------------------------------------------------------------------------------


def test_beam_rotation_by_90_degrees_is_rot90_in_yx_and_inverts():
    vol = torch.rand(1, 8, 12, 12, generator=_gen())
    rot = beam_rotation("image", angle_deg=(90.0, 90.0))
    out = rot({"image": vol})
    torch.testing.assert_close(torch.as_tensor(out["image"]), torch.rot90(vol, k=-1, dims=(-2, -1)), atol=1e-5, rtol=0)
    back = rot.inverse(out)["image"]
    torch.testing.assert_close(torch.as_tensor(back), vol, atol=1e-5, rtol=0)


def test_random_beam_rotation_rotated_back_matches_within_interpolation_error():
    vol = apply_fourier_filter(torch.randn(1, 24, 24, 24, generator=_gen()), bandpass_filter((24,) * 3, 0, 0.3))
    rot = beam_rotation("image", angle_deg=180.0).set_random_state(1)
    back = torch.as_tensor(rot.inverse(rot({"image": vol}))["image"])
    inner = (slice(None), slice(None), slice(8, 16), slice(8, 16))  # away from the cut corners
    err = (back[inner] - vol[inner]).norm() / vol[inner].norm()
    assert err < 0.1


def test_so3_rotation_is_uniform_and_rotated_back_matches():
    rot = RandSO3Rotate().set_random_state(0)
    mats = []
    for _ in range(400):
        rot.randomize()
        mats.append(rot.matrix)
    mats = np.stack(mats)
    np.testing.assert_allclose(mats @ mats.transpose(0, 2, 1), np.broadcast_to(np.eye(3), mats.shape), atol=1e-10)
    np.testing.assert_allclose(np.linalg.det(mats), 1.0, atol=1e-10)
    assert np.abs(mats.mean(0)).max() < 0.15  # E[R] = 0 under the Haar measure
    zz, yy, xx = torch.meshgrid(*(torch.arange(24.0) - 11.5,) * 3, indexing="ij")
    blob = torch.exp(-(zz**2 / 50 + yy**2 / 18 + xx**2 / 8))[None]  # anisotropic, well inside the box
    out = torch.as_tensor(rot(blob))
    assert (out - blob).norm() / blob.norm() > 0.2  # it rotated
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3] = torch.as_tensor(rot.matrix).T
    back = torch.as_tensor(Affine(affine=m, padding_mode="zeros", image_only=True)(out))
    assert (back - blob).norm() / blob.norm() < 0.05


def test_shift_stays_in_range_and_moves_the_content_by_minus_the_drawn_shift():
    vol = torch.rand(1, 12, 12, 12, generator=_gen())
    shift = RandShift(prob=1.0, max_shift=2.0).set_random_state(0)
    draws = []
    for _ in range(50):
        out = shift(vol)
        draws.append(shift.shift)
        ref = Affine(translate_params=shift.shift, padding_mode="zeros", image_only=True)(vol)
        torch.testing.assert_close(out, ref)
    draws = torch.tensor(draws)  # (50, 3) voxels, z y x
    assert float(draws.abs().max()) <= 2.0 and float(draws.abs().max()) > 1.8 and float(draws.std()) > 0.8
    shift.shift = (1.0, 0.0, -2.0)  # an integer shift is exact: output voxel p is input voxel p + t
    out = torch.as_tensor(shift(vol, randomize=False))
    torch.testing.assert_close(out[:, :-1, :, 2:], vol[:, 1:, :, :-2], atol=1e-5, rtol=0)
    assert float(out[:, -1].abs().max()) == 0.0 and float(out[..., :2].abs().max()) == 0.0  # zeros came in
    twin = RandShiftd(["image", "mask"], max_shift=1.0).set_random_state(0)({"image": vol, "mask": vol.clone()})
    torch.testing.assert_close(twin["image"], twin["mask"])
    assert not torch.allclose(twin["image"], vol)


def test_dictionary_twin_moves_all_keys_together():
    vol = torch.rand(1, 12, 12, 12, generator=_gen())
    out = RandSO3Rotated(["image", "mask"]).set_random_state(0)({"image": vol, "mask": vol.clone()})
    torch.testing.assert_close(out["image"], out["mask"])


# --- the missing wedge ----------------------------------------------------------------------------


def test_so3_moves_the_wedge_and_reimposition_removes_the_power_inside():
    n = 24
    measured = missing_wedge_mask((n,) * 3, TILT)
    vol = _wedged_noise(n)
    assert _wedge_ratio(vol, measured) < 1e-6
    rotated = RandSO3Rotate().set_random_state(1)(vol)
    assert _wedge_ratio(rotated, measured) > 0.3  # rotation filled the wedge
    assert _wedge_ratio(ImposeMissingWedge(TILT)(rotated), measured) < 1e-6
    views = cryo3d_views(rotation="so3", crop_prob=1.0, noise_prob=1.0, lowpass_prob=1.0, ctf_prob=1.0)
    out = views.set_random_state(0)({"image": vol})
    for key in ("view_0", "view_1"):
        assert _wedge_ratio(out[key], measured) < 1e-6
        assert torch.as_tensor(out[key]).std() > 0.5  # not wiped out


@pytest.mark.parametrize("angle", [90.0, 30.0])
def test_beam_rotation_keeps_a_physical_wedge(angle):
    n = 24
    vol = _wedged_noise(n, high=0.6)
    out = beam_rotation("image", angle_deg=(angle, angle))({"image": vol})["image"]
    inside_rotated = _wedge_ratio(out, _rotated_wedge(n, angle))
    assert inside_rotated < (1e-6 if angle == 90.0 else 0.15)  # 30°: bilinear interpolation leaks a little
    assert _wedge_ratio(out, missing_wedge_mask((n,) * 3, TILT)) > max(3 * inside_rotated, 0.3)  # its axis turned


def test_cryo3d_beam_views_keep_the_wedge_including_the_added_noise():
    n = 24
    vol = _wedged_noise(n)
    views = cryo3d_views(rotation="beam", beam_angle_deg=(90.0, 90.0), crop_prob=0.0, noise_prob=1.0)
    views = views.set_random_state(0)
    out = views({"image": vol})
    for key in ("view_0", "view_1"):
        assert _wedge_ratio(out[key], _rotated_wedge(n, 90.0)) < 1e-6


# --- intensity --------------------------------------------------------------------------------------


def test_snr_jitter_divides_the_measured_snr_by_the_factor():
    n = 32
    signal = apply_fourier_filter(torch.randn(1, n, n, n, generator=_gen(0)), bandpass_filter((n,) * 3, 0, 0.4))
    noise = torch.randn(1, n, n, n, generator=_gen(1)) * (signal.var() / 0.5).sqrt()  # SNR 0.5
    jitter = RandSNRJitter(prob=1.0, factor_range=(4.0, 4.0), input_snr=0.5).set_random_state(0)
    out = jitter(signal + noise)
    snr = float(signal.var() / (out - signal).var())
    assert snr == pytest.approx(0.5 / 4, rel=0.1)


def test_snr_jitter_with_tilt_range_adds_wedge_shaped_noise():
    n = 24
    vol = _wedged_noise(n)
    out = RandSNRJitter(prob=1.0, factor_range=(3.0, 3.0), tilt_range=TILT).set_random_state(0)(vol)
    added = torch.as_tensor(out) - vol
    assert _wedge_ratio(added, missing_wedge_mask((n,) * 3, TILT)) < 1e-6
    assert float(added.var()) == pytest.approx(2 * float(vol.var()) / 1.1, rel=0.1)


def test_low_pass_and_ctf_jitter_filter_the_spectrum():
    n = 16
    vol = torch.randn(1, n, n, n, generator=_gen())
    low = RandLowPass(prob=1.0, cutoff_range=(0.5, 0.5)).set_random_state(0)(vol)
    kz, ky, kx = fourier_grid((n,) * 3)
    high = (torch.sqrt(kz**2 + ky**2 + kx**2) > 0.3).expand(n, n, n)  # beyond 0.6 Nyquist
    assert torch.fft.fftn(torch.as_tensor(low)[0])[high].abs().max() < 1e-4
    ctf = torch.as_tensor(RandCTF(prob=1.0).set_random_state(0)(vol))
    ratio = torch.fft.fftn(ctf[0]).abs() / torch.fft.fftn(vol[0]).abs()
    assert ratio.max() <= 1.0 + 1e-4 and ratio.min() < 0.05  # an amplitude modulation with zeros
    assert float((ctf * vol).sum()) > 0  # |CTF|: no contrast inversion


def test_eval_transform_normalises_each_volume():
    vol = 5.0 + 3.0 * torch.randn(1, 16, 16, 16, generator=_gen())
    out = torch.as_tensor(eval_transform()({"image": vol.double(), "label": 1})["image"])
    assert out.dtype == torch.float32
    assert abs(float(out.mean())) < 1e-5 and float(out.std()) == pytest.approx(1.0, abs=1e-3)


# --- views and reproducibility ----------------------------------------------------------------------

PRESETS = {
    "paper": lambda: paper_views(crop_prob=1.0, affine_prob=1.0),
    "cryo3d_beam": lambda: cryo3d_views(rotation="beam"),
    "cryo3d_so3": lambda: cryo3d_views(rotation="so3"),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("device", DEVICES)
def test_views_differ_but_a_seed_reproduces_them(name, device):
    vol = torch.randn(1, 16, 16, 16, generator=_gen()).to(device)
    sample = {"image": vol, "label": 4, "name": "p1"}
    out = PRESETS[name]().set_random_state(7)(sample)
    again = PRESETS[name]().set_random_state(7)(sample)
    other = PRESETS[name]().set_random_state(8)(sample)
    assert sorted(out) == ["label", "name", "view_0", "view_1"] and out["label"] == 4
    assert not torch.allclose(out["view_0"], out["view_1"])
    for key in ("view_0", "view_1"):
        v = out[key]
        assert v.shape == (1, 16, 16, 16) and v.dtype == torch.float32 and v.device.type == device
        assert torch.isfinite(v).all()
        torch.testing.assert_close(v, again[key])
        assert not torch.allclose(v, other[key])
    torch.testing.assert_close(sample["image"], vol)  # input untouched


@pytest.mark.parametrize("rotation", ["beam", "so3"])
def test_cryo3d_views_are_normalised(rotation):
    out = cryo3d_views(rotation=rotation, noise_prob=1.0).set_random_state(0)({"image": torch.rand(1, 16, 16, 16)})
    for key in ("view_0", "view_1"):
        v = torch.as_tensor(out[key])
        assert abs(float(v.mean())) < 1e-4 and float(v.std()) == pytest.approx(1.0, abs=1e-3)


def test_multiviewd_names_keeps_label_and_draws_fresh_per_view():
    views = MultiViewd(RandSO3Rotated("image"), n_views=3, keep_input=True).set_random_state(0)
    vol = torch.rand(1, 12, 12, 12, generator=_gen())
    out = views({"image": vol, "label": 2})
    assert sorted(out) == ["image", "label", "view_0", "view_1", "view_2"] and out["label"] == 2
    for a, b in [("view_0", "view_1"), ("view_1", "view_2"), ("view_0", "view_2")]:
        assert not torch.allclose(out[a], out[b])
    with pytest.raises(ConfigError, match="view key"):
        MultiViewd(RandSO3Rotated("image"), n_views=2, view_keys=("q",))


def test_bad_transform_configurations_raise_config_errors():
    with pytest.raises(ConfigError, match="EnsureChannelFirstd"):
        RandSO3Rotate()(torch.rand(8, 8, 8))
    with pytest.raises(ConfigError, match="rotation"):
        cryo3d_views(rotation="xyz")
    with pytest.raises(ConfigError, match="factor_range"):
        RandSNRJitter(factor_range=(0.5, 2.0))


def test_a_bundle_config_builds_the_views_in_one_target():
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    config = {
        "_target_": "cryomonai.transforms.cryo3d_views",
        "rotation": "so3",
        "crop_scale": [0.6, 1.0],
        "tilt_range": [-50, 50],
        "beam_angle_deg": [-90, 90],
    }
    views = ConfigParser({"views": config}).get_parsed_content("views")
    assert isinstance(views, Compose)
    out = views.set_random_state(0)({"image": _wedged_noise(16), "label": 0})
    assert _wedge_ratio(out["view_0"], missing_wedge_mask((16,) * 3, (-50.0, 50.0))) < 1e-6


@pytest.mark.parametrize("views", [paper_views, cryo3d_views], ids=["paper", "cryo3d"])
def test_views_of_metatensors_collate_into_a_batch(views):
    """With the default probabilities some samples skip a step: the batch must not mix tensor types."""
    from monai.data import MetaTensor, list_data_collate

    pipeline = views().set_random_state(0)
    samples = [{"image": MetaTensor(torch.randn(1, 16, 16, 16, generator=_gen(i))), "label": i} for i in range(8)]
    batch = list_data_collate([pipeline(s) for s in samples])
    assert batch["view_0"].shape == (8, 1, 16, 16, 16) and batch["label"].tolist() == list(range(8))


@pytest.mark.parametrize("make", [eval_transform, paper_views, lambda: cryo3d_views(rotation="so3")],
                         ids=["eval", "paper", "cryo3d"])
@pytest.mark.parametrize("as_numpy", [False, True], ids=["tensor", "numpy"])
def test_pipelines_leave_the_callers_volume_unchanged(make, as_numpy: bool) -> None:
    """MONAI's NormalizeIntensity works in place; an in-memory dataset must not be rewritten by it."""
    vol = (torch.rand(1, 8, 8, 8, generator=_gen()) * 5 + 3).float()
    src = vol.numpy() if as_numpy else vol
    before = vol.clone()
    out = make()({"image": src})
    assert torch.equal(vol, before)
    images = [torch.as_tensor(v) for v in out.values()]
    assert images and all(v.data_ptr() != vol.data_ptr() and torch.isfinite(v).all() for v in images)


TWINS = ["RandSNRJitterd", "RandLowPassd", "RandCTFd", "RandResizedCropd", "RandInPlaneAffined", "RandSO3Rotated",
         "RandShiftd"]


@pytest.mark.parametrize("name", TWINS)
def test_a_twin_takes_keys_its_array_transforms_arguments_and_allow_missing_keys(name: str) -> None:
    """The twin's signature (the bundle's JSON keys) is generated from its array transform's, defaults and all."""
    twin = getattr(cryo_transforms, name)
    array = getattr(cryo_transforms, name[:-1])
    assert twin.array_class is array
    params = list(inspect.signature(twin).parameters.values())
    assert [p.name for p in params] == ["keys", *inspect.signature(array).parameters, "allow_missing_keys"]
    assert params[0].default is inspect.Parameter.empty and params[-1].default is False
    assert params[1:-1] == list(inspect.signature(array).parameters.values())
    built = twin("image", allow_missing_keys=True).transform
    assert type(built) is array and twin("image", allow_missing_keys=True).allow_missing_keys


def test_a_twin_binds_positional_and_keyword_arguments_like_its_array_transform() -> None:
    vol = torch.randn(1, 8, 8, 8, generator=_gen())
    positional = RandCTFd("image", 1.0, (-3.0, -3.0), 0.8, 200.0, 2.7, 0.1, 0.0, False, True)
    keyword = RandCTFd(keys="image", prob=1.0, defocus_range_um=(-3.0, -3.0), pixel_size_nm=0.8, voltage_kv=200.0,
                       cs_mm=2.7, amplitude_contrast=0.1, abs_ctf=False, allow_missing_keys=True)
    array = RandCTF(1.0, (-3.0, -3.0), 0.8, 200.0, 2.7, 0.1, 0.0, False)
    assert positional.allow_missing_keys and keyword.allow_missing_keys
    assert positional.transform.microscope == keyword.transform.microscope == array.microscope
    out = [t.set_random_state(0)({"image": vol})["image"] for t in (positional, keyword)]
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], array.set_random_state(0)(vol))
    with pytest.raises(TypeError, match="RandCTFd.*voltage"):
        RandCTFd("image", voltage=200.0)
    with pytest.raises(TypeError, match="__init__"):
        class _Twin(RandArrayd, array=RandCTF):
            def __init__(self, keys):
                super().__init__(keys, RandCTF())
