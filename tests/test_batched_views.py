"""Views made from a whole batch on its device (``cryomonai.transforms.batched``, the bundle's
``augment_on_device``): the same geometry and filters as the per-sample MONAI transforms, the
right distributions, and pretraining through the bundle with them.

Batches are (B, C, D, H, W) = (B, 1, z, y, x), 12³–24³, fixed seeds.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, run
from monai.transforms import Affine, Compose, Resize, SpatialCrop
from scipy.spatial.transform import Rotation

from cryomonai.engines import SSLPrepareBatch
from cryomonai.errors import ConfigError
from cryomonai.physics.fourier import apply_fourier_filter, bandpass_filter, fourier_grid
from cryomonai.physics.wedge import missing_wedge_mask
from cryomonai.transforms import (
    BatchedViews,
    RandCTF,
    RandLowPass,
    ViewPipeline,
    beam_rotation,
    cryo3d_views,
    device_views,
    eval_transform,
    loader_transform,
    paper_views,
    random_rotations,
)
from cryomonai.transforms.batched import affine_theta

CONFIGS = Path(__file__).resolve().parents[1] / "bundles" / "cryo_ssl" / "configs"
TILT = (-60.0, 60.0)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _smooth(b: int, n: int, seed: int = 0) -> torch.Tensor:
    """A batch of low-passed noise volumes (b, 1, n, n, n): interpolation errors stay small."""
    return apply_fourier_filter(_randn(b, 1, n, n, n, seed=seed), bandpass_filter((n,) * 3, 0.0, 0.5))


# ---- geometry: one resampling equals MONAI's transforms ------------------------------------------


def test_rotation_matches_monai_affine_on_an_anisotropic_box() -> None:
    x = _randn(3, 1, 12, 14, 16)
    rot = torch.tensor(Rotation.random(3, random_state=1).as_matrix(), dtype=torch.float32)
    out = BatchedViews().resample(x, affine_theta({"rotation": rot}, x.shape))
    for i in range(3):
        m = torch.eye(4, dtype=torch.float64)
        m[:3, :3] = rot[i].double()  # RandSO3Rotate's matrix: (z, y, x) voxel coordinates
        ref = Affine(affine=m, padding_mode="zeros", image_only=True)(x[i])
        torch.testing.assert_close(out[i], ref.as_tensor(), atol=1e-4, rtol=0)


def test_shift_matches_monais_translation() -> None:
    """A shift in voxels (z, y, x), fractional or not, is MONAI's ``translate_params`` (as ``RandShift``)."""
    x = _randn(2, 1, 12, 14, 16)
    t = torch.tensor([[0.5, -1.25, 2.0], [-1.0, 0.3, 0.0]])
    out = BatchedViews().resample(x, affine_theta({"shift": t}, x.shape))
    for i in range(2):
        ref = Affine(translate_params=t[i].tolist(), padding_mode="zeros", image_only=True)(x[i])
        torch.testing.assert_close(out[i], ref.as_tensor(), atol=1e-4, rtol=0)


def test_quarter_turn_about_z_is_monais_beam_rotation() -> None:
    x = _randn(1, 1, 16, 16, 16)
    views = BatchedViews(rotation="beam", beam_angle_deg=(90.0, 90.0))
    out = views.resample(x, affine_theta(views.spatial_params(1, x.device), x.shape))
    torch.testing.assert_close(out[0], torch.rot90(x[0], k=-1, dims=(-2, -1)), atol=1e-5, rtol=0)
    ref = beam_rotation("image", (90.0, 90.0)).set_random_state(0)({"image": x[0]})["image"]
    torch.testing.assert_close(out[0], ref.as_tensor(), atol=1e-5, rtol=0)


def test_crop_matches_monai_crop_and_resize() -> None:
    x = _randn(1, 1, 16, 16, 16)
    params = {"crop_scale": torch.tensor([[0.5, 0.5, 0.5]]), "crop_centre": torch.tensor([[0.25, -0.5, 0.0]])}
    out = BatchedViews().resample(x, affine_theta(params, x.shape))[0]
    # centre 0.25 of the half-box in z: voxel 10, side 8 → [6, 14); y: [0, 8); x: [4, 12)
    ref = Resize((16, 16, 16), mode="trilinear")(SpatialCrop(roi_start=(6, 0, 4), roi_end=(14, 8, 12))(x[0]))
    inner = (slice(None), slice(1, -1), slice(1, -1), slice(1, -1))  # Resize clamps at the crop's edge
    torch.testing.assert_close(out[inner], ref.as_tensor()[inner], atol=1e-5, rtol=0)


def test_steps_compose_in_pipeline_order() -> None:
    """Rotate by R, then crop: the crop's centre is taken in the rotated volume."""
    x = _smooth(1, 16)
    rot = torch.tensor(Rotation.from_euler("x", 90, degrees=True).as_matrix(), dtype=torch.float32)[None]
    crop = {"crop_scale": torch.full((1, 3), 0.5), "crop_centre": torch.tensor([[0.0, 0.0, 0.5]])}
    views = BatchedViews()
    both = views.resample(x, affine_theta({"rotation": rot, **crop}, x.shape))
    one_by_one = views.resample(views.resample(x, affine_theta({"rotation": rot}, x.shape)), affine_theta(crop, x.shape))
    torch.testing.assert_close(both, one_by_one, atol=1e-4, rtol=0)


def test_so3_rotations_are_uniform() -> None:
    torch.manual_seed(0)
    r = random_rotations(20000).double()
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand_as(r), atol=1e-5,
                               rtol=0)
    assert torch.allclose(torch.linalg.det(r), torch.ones(20000, dtype=torch.float64), atol=1e-5)
    assert r.mean(0).abs().max() < 0.02
    # Haar measure: E[trace] = 1 + 2 E[cos θ] = 0; P(θ < 90°) = (π/2 − 1)/π. Uniform Euler angles fail both.
    angle = torch.arccos(((r.diagonal(dim1=1, dim2=2).sum(1) - 1) / 2).clamp(-1, 1))
    assert abs(float(r.diagonal(dim1=1, dim2=2).sum(1).mean())) < 0.03
    assert abs(float((angle < math.pi / 2).double().mean()) - (math.pi / 2 - 1) / math.pi) < 0.01


def test_paper_twin_keeps_identical_z_slices_identical() -> None:
    """The paper's views are in-plane only: a volume with equal z-slices keeps them equal."""
    torch.manual_seed(0)
    x = _randn(8, 1, 1, 16, 16).expand(8, 1, 8, 16, 16)
    views = paper_views(crop_prob=1.0, affine_prob=1.0).batched()
    for v in views(x):
        assert torch.allclose(v, v[:, :, :1].expand_as(v), atol=1e-5)
        assert not torch.allclose(v, x, atol=1e-2)


# ---- filters: the same numbers as the per-sample transforms --------------------------------------


def test_fixed_lowpass_and_ctf_equal_the_per_sample_transforms() -> None:
    x = _randn(2, 1, 16, 16, 16)
    views = BatchedViews(lowpass_prob=1.0, lowpass_cutoff=(0.6, 0.6), ctf_prob=1.0, defocus_range_um=(-3.0, -3.0),
                         microscope=dict(pixel_size_nm=2.0, envelope_sigma=0.0, amplitude_contrast=0.07))
    lowpass = RandLowPass(prob=1.0, cutoff_range=(0.6, 0.6))
    ctf = RandCTF(prob=1.0, defocus_range_um=(-3.0, -3.0), pixel_size_nm=2.0, amplitude_contrast=0.07)
    ref = torch.stack([ctf(lowpass(x[i])) for i in range(2)])
    torch.testing.assert_close(views.fourier_jitter(x), ref, atol=1e-5, rtol=0)


def test_noise_divides_the_snr_and_keeps_the_wedge_empty() -> None:
    torch.manual_seed(0)
    n, measured = 16, missing_wedge_mask((16,) * 3, TILT)
    x = apply_fourier_filter(_randn(32, 1, n, n, n), measured.float())  # pure wedged noise: SNR 0
    views = BatchedViews(noise_prob=1.0, noise_factor_range=(2.0, 2.0), input_snr=0.0, tilt_range=TILT)
    out = views.fourier_jitter(x)
    ratio = out.var(dim=(1, 2, 3, 4)) / x.var(dim=(1, 2, 3, 4))
    assert abs(float(ratio.mean()) - 2.0) < 0.1
    power = torch.fft.fftn(out[:, 0].double(), dim=(-3, -2, -1)).abs() ** 2
    assert float(power[:, ~measured].mean() / power[:, measured].mean()) < 1e-10


def test_each_sample_draws_its_own_filter() -> None:
    torch.manual_seed(0)
    views = BatchedViews(lowpass_prob=0.5, lowpass_cutoff=(0.3, 0.3))
    x = _randn(200, 1, 12, 12, 12)
    changed = (views.fourier_jitter(x) - x).flatten(1).abs().amax(1) > 1e-4
    assert 0.4 < float(changed.double().mean()) < 0.6  # prob 0.5 per sample, not per batch


# ---- whole views ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rotation", ["beam", "so3"])
def test_cryo3d_twin_makes_normalised_physical_views(rotation: str) -> None:
    torch.manual_seed(0)
    n = 16
    measured = missing_wedge_mask((n,) * 3, TILT)
    x = apply_fourier_filter(_smooth(4, n), measured.float())
    views = cryo3d_views(rotation=rotation, crop_prob=1.0, noise_prob=1.0, lowpass_prob=1.0, ctf_prob=1.0).batched()
    v0, v1 = views(x)
    for v in (v0, v1):
        assert v.shape == x.shape and v.dtype == torch.float32 and torch.isfinite(v).all()
        torch.testing.assert_close(v.mean(dim=(2, 3, 4)), torch.zeros(4, 1), atol=1e-5, rtol=0)
        torch.testing.assert_close(v.std(dim=(2, 3, 4), unbiased=False), torch.ones(4, 1), atol=1e-4, rtol=0)
    assert not torch.allclose(v0, v1, atol=1e-2) and not torch.allclose(v0[0], v0[1], atol=1e-2)
    if rotation == "so3":  # re-imposed: nothing in the missing wedge
        power = torch.fft.fftn(v0[:, 0].double(), dim=(-3, -2, -1)).abs() ** 2
        assert float(power[:, ~measured].mean() / power[:, measured].mean()) < 1e-10


def _band_power(v: torch.Tensor, n: int) -> np.ndarray:
    """Mean Fourier power of (B, 1, n, n, n) views in 5 radial bands (DC and corners left out)."""
    kz, ky, kx = fourier_grid((n,) * 3)
    bands = torch.clamp((torch.sqrt(kz**2 + ky**2 + kx**2) / 0.5 * 6).long(), max=6)
    power = torch.fft.fftn(v[:, 0].double(), dim=(-3, -2, -1)).abs() ** 2
    return np.array([float(power[:, bands == i].mean()) for i in range(1, 6)])


@pytest.mark.parametrize("factory", [lambda: cryo3d_views(rotation="so3", pixel_size_nm=2.0),
                                     lambda: paper_views(crop_prob=1.0, affine_prob=1.0)], ids=["cryo3d_so3", "paper"])
def test_batched_views_have_the_per_sample_views_spectrum(factory) -> None:
    """The twin's views blur like the per-sample ones (one interpolation per spatial step): band powers
    within 15 % (measured 0.94-1.10 over 3 seeds); composing the steps into one resampling is 1.2-1.4x
    sharper in the high bands, which this catches."""
    n = 16
    x = _smooth(64, n)
    x = (x - x.mean(dim=(2, 3, 4), keepdim=True)) / x.std(dim=(2, 3, 4), keepdim=True)
    pipe = factory().set_random_state(0)
    per_sample = torch.stack([pipe({"image": x[i]})["view_0"] for i in range(64)])
    torch.manual_seed(0)
    batched = factory().batched()(x)[0]
    ratio = _band_power(batched, n) / _band_power(per_sample, n)
    assert np.all(np.abs(np.log(ratio)) < math.log(1.15)), ratio


def test_views_follow_torchs_seed() -> None:
    views = cryo3d_views(rotation="so3").batched()
    x = _smooth(3, 12)
    torch.manual_seed(5)
    a = views(x)
    torch.manual_seed(5)
    b = views(x)
    torch.manual_seed(6)
    c = views(x)
    assert all(torch.equal(p, q) for p, q in zip(a, b)) and not torch.allclose(a[0], c[0])


def test_bad_batch_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="(B, C, D, H, W)"):
        cryo3d_views().batched()(torch.zeros(1, 8, 8, 8))
    with pytest.raises(ConfigError, match="rotation"):
        BatchedViews(rotation="xyz")


# ---- the bundle's switch -------------------------------------------------------------------------


def test_view_factories_give_their_batched_twin() -> None:
    paper, cryo = paper_views(crop_prob=0.3), cryo3d_views(rotation="so3", pixel_size_nm=2.0, noise_prob=0.7)
    assert isinstance(paper, ViewPipeline) and isinstance(paper, Compose)
    twin = paper.batched()
    assert (twin.crop_prob, twin.crop_axes, twin.rotation, twin.normalise) == (0.3, "yx", None, False)
    twin = cryo.batched()
    assert (twin.rotation, twin.reimpose_wedge, twin.noise_prob, twin.microscope["pixel_size_nm"]) == (
        "so3", True, 0.7, 2.0)
    assert cryo3d_views(rotation="so3", tilt_range=None).batched().reimpose_wedge is False
    assert (cryo.batched().shift_voxels, cryo3d_views(shift_voxels=0.5).batched().shift_voxels) == (0.0, 0.5)
    assert loader_transform(cryo, False) is cryo and device_views(cryo, False) is None
    assert isinstance(device_views(cryo, True), BatchedViews)
    item = loader_transform(cryo, True)({"image": _randn(1, 8, 8, 8) * 3 + 1, "label": 2})
    assert set(item) == {"image", "label"} and abs(float(item["image"].mean())) < 1e-5  # normalised only
    with pytest.raises(ConfigError, match="augment_on_device false"):
        loader_transform(eval_transform(), True)
    with pytest.raises(ConfigError, match="augment_on_device"):
        cryo3d_views(keys=("image", "mask")).batched()


def test_prepare_batch_makes_the_views_on_the_device_in_the_memory_format() -> None:
    torch.manual_seed(0)
    prepare = SSLPrepareBatch(cryo3d_views().batched())
    views = prepare({"image": _randn(4, 1, 12, 12, 12), "label": torch.arange(4)}, "cpu", False, 2,
                    memory_format=torch.channels_last_3d)
    assert len(views) == 2 and all(v.is_contiguous(memory_format=torch.channels_last_3d) for v in views)
    with pytest.raises(ConfigError, match="needs 3"):
        prepare({"image": _randn(4, 1, 12, 12, 12)}, "cpu", False, 3)
    with pytest.raises(ConfigError, match="'image'"):
        prepare({"view_0": _randn(4, 1, 12, 12, 12)}, "cpu", False, 2)


def test_augment_on_device_is_off_by_default_and_swaps_the_loader_transform() -> None:
    def parsed(**overrides):
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / "common.json"), str(CONFIGS / "pretrain.json")])
        parser.update(overrides)
        return parser

    cpu, cuda = parsed(), parsed(device="$torch.device('cuda')")
    assert cpu.get_parsed_content("augment_on_device") is False
    assert cuda.get_parsed_content("augment_on_device") is False  # opt-in on a GPU too (not measured there yet)
    assert cpu.get_parsed_content("train#prepare_batch").views is None
    on = parsed(augment_on_device=True)
    assert isinstance(on.get_parsed_content("train#prepare_batch").views, BatchedViews)
    loader = on.get_parsed_content("train#loader_transforms")
    assert not isinstance(loader, ViewPipeline)  # the loader only normalises


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cryomonai.simulate.dataset import simulate_dataset

    root = tmp_path_factory.mktemp("devviews")
    simulate_dataset(root / "data", n_per_class=8, box=16, classes=("1bxn", "1qvr", "1s3x"), seed=0, workers=0,
                     progress=False)
    return root


def _pretrain(root: Path, name: str, epochs: int) -> tuple[dict, Path]:
    out = root / name
    run("pretrain", config_file=[str(CONFIGS / f) for f in ("common.json", "pretrain.json", "methods/simclr.json")],
        bundle_root=str(CONFIGS.parent), dataset_dir=str(root / "data"), ckpt_dir=str(out / "models"),
        output_dir=str(out / "eval"), simulate=False, progress=False, batch_size=4, epochs=epochs,
        augment_on_device=True, **{"network_def#channels": 8},
        **{"train#transforms": {"_target_": "cryomonai.transforms.cryo3d_views", "n_views": "$@ssl_method.n_views",
                                "rotation": "so3"}})
    return torch.load(out / "models" / "pretrain.pt", weights_only=True), out


def test_bundle_pretrains_with_views_made_on_the_device(tiny_data: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first, out = _pretrain(tiny_data, "a", epochs=6)
    again, _ = _pretrain(tiny_data, "b", epochs=6)
    assert first["trainer"]["iteration"] == 6 * 3  # 15 training particles, batch 4
    assert all(torch.equal(v, again["model"][k]) for k, v in first["model"].items())  # seeded: same run
    events = EventAccumulator(str(out / "eval" / "pretrain"))
    events.Reload()
    assert "views" in events.Tags()["images"]  # the views made on the device reach TensorBoard
    losses = [s.value for s in events.Scalars("train_loss")]
    assert len(losses) == 6 and np.isfinite(losses).all()


def test_contrastive_loss_falls_with_views_made_on_the_device() -> None:
    """SimCLR through MONAI's trainer, the views made by ``SSLPrepareBatch``: 30 steps on one batch."""
    from ignite.engine import Events
    from monai.engines import SupervisedTrainer

    from cryomonai.engines import SSLStep, ssl_iteration
    from cryomonai.networks import build_encoder
    from cryomonai.ssl import build_method

    torch.manual_seed(0)
    method = build_method("simclr", build_encoder("rb3d", channels=8))
    trainer = SupervisedTrainer("cpu", 30, [{"image": _smooth(16, 12)}], SSLStep(method),
                                torch.optim.Adam(method.parameters(), lr=1e-3), None, iteration_update=ssl_iteration,
                                decollate=False, prepare_batch=SSLPrepareBatch(paper_views().batched()))
    losses: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"]))
    trainer.run()
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5]), losses  # measured: 0.71-0.73 over 3 seeds
