"""Tests for cryomonai.io.mrc (read/write/check, MrcReader in MONAI) and cryomonai.io.atomic."""

from __future__ import annotations

import pickle
import subprocess
import sys

import mrcfile
import numpy as np
import pytest

from cryomonai.errors import CryoDataError
from cryomonai.io import atomic_path, atomic_write, check_volume, read_mrc, read_mrc_header, write_mrc


def _volume(shape=(6, 7, 8), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _raw_mrc(path, data, voxel_size=None):
    """Write ``data`` with mrcfile directly, in its own dtype (to test our reader on each mode)."""
    with mrcfile.new(path, overwrite=True) as mrc:
        if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
            with pytest.warns(RuntimeWarning, match="NaN|infinite|invalid value"):  # mrcfile: header stats
                mrc.set_data(data)
        else:
            mrc.set_data(data)
        if voxel_size is not None:
            mrc.voxel_size = voxel_size
    return path


# ------------------------------------------------------------------ read / write


@pytest.mark.parametrize("dtype, mode", [(np.float32, 2), (np.float16, 12)])
def test_write_read_round_trip(tmp_path, dtype, mode):
    vol = _volume()
    path = write_mrc(tmp_path / "v.mrc", vol, voxel_size=13.6, dtype=dtype)
    out, voxel = read_mrc(path)
    assert out.dtype == np.float32 and out.shape == (6, 7, 8)
    np.testing.assert_array_equal(out, vol.astype(dtype).astype(np.float32))
    assert voxel == pytest.approx(13.6, abs=1e-3)
    assert read_mrc_header(path).mode == mode


def test_write_anisotropic_voxel_size_is_zyx(tmp_path):
    path = write_mrc(tmp_path / "v.mrc", _volume(), voxel_size=(3.0, 2.0, 1.5))
    assert read_mrc_header(path).voxel_size == pytest.approx((3.0, 2.0, 1.5))
    assert read_mrc(path)[1] == pytest.approx(1.5)  # x


def test_write_accepts_a_torch_tensor(tmp_path):
    torch = pytest.importorskip("torch")
    vol = _volume()
    out, _ = read_mrc(write_mrc(tmp_path / "t.mrc", torch.from_numpy(vol)))
    np.testing.assert_array_equal(out, vol)


@pytest.mark.parametrize(
    "dtype, mode", [(np.int8, 0), (np.int16, 1), (np.float32, 2), (np.uint16, 6), (np.float16, 12)]
)
def test_every_supported_mode_reads_as_float32(tmp_path, dtype, mode):
    data = (np.arange(4 * 5 * 6).reshape(4, 5, 6) % 100).astype(dtype)
    path = _raw_mrc(tmp_path / f"m{mode}.mrc", data, voxel_size=2.0)
    assert read_mrc_header(path).mode == mode
    out, voxel = read_mrc(path)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, data.astype(np.float32))
    assert voxel == 2.0


def test_big_endian_file_reads_as_native_float32(tmp_path):
    data = np.arange(64).reshape(4, 4, 4).astype(">i2")
    out, _ = read_mrc(_raw_mrc(tmp_path / "be.mrc", data))
    assert out.dtype == np.dtype("=f4") and out.dtype.isnative
    np.testing.assert_array_equal(out, np.arange(64).reshape(4, 4, 4))


def test_unset_voxel_size_reads_as_one(tmp_path):
    path = _raw_mrc(tmp_path / "v.mrc", _volume())  # mrcfile leaves cella = 0
    assert read_mrc(path)[1] == 1.0


def test_mmap_returns_stored_dtype_read_only(tmp_path):
    vol = _volume()
    path = write_mrc(tmp_path / "v.mrc", vol, dtype=np.float16)
    data, voxel = read_mrc(path, mmap=True)
    assert isinstance(data, np.memmap) and data.dtype == np.float16 and not data.flags.writeable
    np.testing.assert_array_equal(data[2:4].astype(np.float32), vol[2:4].astype(np.float16).astype(np.float32))
    assert voxel == 1.0


def test_mmap_skips_finite_check_by_default(tmp_path):
    vol = _volume()
    vol[1, 2, 3] = np.nan
    path = _raw_mrc(tmp_path / "nan.mrc", vol)
    data, _ = read_mrc(path, mmap=True)
    assert np.isnan(data[1, 2, 3])
    with pytest.raises(CryoDataError, match="1 NaN/Inf voxels"):
        read_mrc(path, mmap=True, check_finite=True)


# ------------------------------------------------------------------ errors


def test_missing_file(tmp_path):
    with pytest.raises(CryoDataError, match=r"nope\.mrc: file not found"):
        read_mrc(tmp_path / "nope.mrc")


@pytest.mark.parametrize("mmap", [False, True])
def test_truncated_file_names_the_file(tmp_path, mmap):
    path = write_mrc(tmp_path / "cut.mrc", _volume())
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CryoDataError, match=r"cut\.mrc: file is truncated") as err:
        read_mrc(path, mmap=mmap)
    assert "\n" not in str(err.value)


def test_not_an_mrc_file(tmp_path):
    path = tmp_path / "notes.mrc"
    path.write_bytes(b"this is not a map " * 100)
    with pytest.raises(CryoDataError, match=r"notes\.mrc: not a readable MRC file"):
        read_mrc(path)


def test_unsupported_mode(tmp_path):
    path = _raw_mrc(tmp_path / "c.mrc", _volume().astype(np.complex64))
    with pytest.raises(CryoDataError, match=r"c\.mrc: unsupported MRC mode 4"):
        read_mrc(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_voxels(tmp_path, bad):
    vol = _volume()
    vol[0, 0, :2] = bad
    path = _raw_mrc(tmp_path / "bad.mrc", vol)
    with pytest.raises(CryoDataError, match=r"bad\.mrc: contains 2 NaN/Inf voxels"):
        read_mrc(path)
    assert read_mrc(path, check_finite=False)[0].shape == vol.shape


def test_2d_image_is_not_a_volume(tmp_path):
    path = _raw_mrc(tmp_path / "img.mrc", _volume()[0])
    with pytest.raises(CryoDataError, match=r"img\.mrc: is a 2D image \(7x8\)"):
        read_mrc(path)


def test_volume_stack_is_not_one_volume(tmp_path):
    path = _raw_mrc(tmp_path / "stack.mrc", _volume((2, 4, 4, 4)))
    with pytest.raises(CryoDataError, match="stack of 2 volumes"):
        read_mrc(path)


def test_write_refuses_nan_and_float16_overflow(tmp_path):
    vol = _volume()
    vol[0, 0, 0] = np.nan
    with pytest.raises(CryoDataError, match="NaN"):
        write_mrc(tmp_path / "nan.mrc", vol)
    with pytest.raises(CryoDataError, match="overflow float16"):
        write_mrc(tmp_path / "big.mrc", _volume() * 1e6, dtype=np.float16)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temp files left
    with pytest.raises(ValueError, match="float32 or float16"):
        write_mrc(tmp_path / "i.mrc", _volume(), dtype=np.int16)


def test_check_volume():
    check_volume(np.zeros((4, 4, 4)), "ok.mrc", box=4)
    check_volume((4, 4, 4), "ok.mrc")
    with pytest.raises(CryoDataError, match=r"a\.mrc: volume is 32x32x30 \(z×y×x\), not cubic — fix: "):
        check_volume(np.zeros((32, 32, 30)), "a.mrc")
    with pytest.raises(CryoDataError, match="volume is 4x4x4 but a box of 6 voxels is expected"):
        check_volume(np.zeros((4, 4, 4)), "a.mrc", box=6)
    with pytest.raises(CryoDataError, match="expected a 3D volume"):
        check_volume(np.zeros((4, 4)), "a.mrc")


# ------------------------------------------------------------------ atomic writes


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_write(target, "w") as f:
            f.write("new, half written")
            raise RuntimeError("disk on fire")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]  # temp file removed
    with atomic_write(target, "wb") as f:
        f.write(b"new")
    assert target.read_bytes() == b"new" and list(tmp_path.iterdir()) == [target]


def test_atomic_path_keeps_old_file_when_writer_fails(tmp_path):
    target = write_mrc(tmp_path / "v.mrc", np.ones((4, 4, 4)))
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    np.testing.assert_array_equal(read_mrc(target)[0], 1.0)
    assert list(tmp_path.iterdir()) == [target]
    with pytest.raises(FileNotFoundError, match="did not create"):
        with atomic_path(target):
            pass
    with pytest.raises(ValueError, match="modes"):
        with atomic_write(target, "a"):
            pass


# ------------------------------------------------------------------ MrcReader in MONAI


def test_importing_io_does_not_import_monai():
    code = "import sys, cryomonai.io.mrc, cryomonai.io; cryomonai.io.read_mrc; print('monai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_mrc_reader_through_load_imaged(tmp_path):
    from monai.data import ImageReader, MetaTensor
    from monai.transforms import LoadImaged

    vol = _volume()
    path = write_mrc(tmp_path / "v.mrc", vol, voxel_size=(3.0, 2.0, 1.5))
    load = LoadImaged(keys="image", reader="cryomonai.io.MrcReader", ensure_channel_first=True)
    assert any(type(r).__name__ == "MrcReader" and isinstance(r, ImageReader) for r in load._loader.readers)
    item = load({"image": str(path), "label": 2})
    img = item["image"]
    assert isinstance(img, MetaTensor) and img.shape == (1, 6, 7, 8) and img.dtype.is_floating_point
    np.testing.assert_array_equal(img[0].numpy(), vol)  # (z, y, x) as stored
    np.testing.assert_allclose(img.pixdim.numpy(), [3.0, 2.0, 1.5])
    assert img.meta["filename_or_obj"] == str(path)
    assert list(img.meta["spatial_shape"]) == [6, 7, 8]
    assert item["label"] == 2


def test_mrc_reader_with_ensure_channel_first_and_spacing(tmp_path):
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Spacingd

    path = write_mrc(tmp_path / "v.mrc", np.ones((8, 8, 8)), voxel_size=2.0)
    pipeline = Compose([
        LoadImaged(keys="image", reader="cryomonai.io.MrcReader"),
        EnsureChannelFirstd(keys="image"),
        Spacingd(keys="image", pixdim=(4.0, 4.0, 4.0)),
    ])
    img = pipeline({"image": str(path)})["image"]
    assert img.shape == (1, 4, 4, 4)
    np.testing.assert_allclose(img.pixdim.numpy(), [4.0, 4.0, 4.0])


def test_mrc_reader_errors_and_pickling(tmp_path):
    from monai.transforms import LoadImage

    from cryomonai.io import MrcReader

    reader = pickle.loads(pickle.dumps(MrcReader(check_finite=False)))
    assert type(reader) is MrcReader and reader.check_finite is False
    assert reader.verify_suffix("a.mrc") and reader.verify_suffix(["a.rec", "b.map"])
    assert not reader.verify_suffix("a.nii")
    vol = _volume()
    vol[0, 0, 0] = np.nan
    path = _raw_mrc(tmp_path / "nan.mrc", vol)
    with pytest.raises(RuntimeError, match=r"nan\.mrc: contains 1 NaN/Inf voxels"):
        LoadImage(reader="cryomonai.io.MrcReader")(str(path))
    img = LoadImage(reader=reader, image_only=True)([str(path), str(path)])  # two files → channels
    assert img.shape == (2, 6, 7, 8)
