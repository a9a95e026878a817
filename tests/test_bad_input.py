"""Every kind of bad input stops with one line: ``"<file or row>: <problem> — fix: <fix>"``.

One parametrized table lists each case a user can run into (a bad MRC file, a bad particle
table, a bad label fraction, a pick outside its tomogram, a bad checkpoint, an unwritable output)
and checks the same contract for all of them: a :class:`~cryomonai.errors.CryoDataError` (or, for
a checkpoint that does not fit the encoder the run is configured with, a
:class:`~cryomonai.errors.ConfigError`; never a deep numpy/torch/OS traceback, never a silent
wrong result), whose message is **one line**,
**names the offending file or row**, and **says how to fix it**. Several cases are also tested,
in more detail, next to their module (``test_io_mrc.py``, ``test_table.py``, ``test_data.py``,
``test_engines.py``, ``test_extract.py``); the helpers below are small copies, not imports of
those test modules.

A hypothesis fuzz test then mutates header bytes and truncates a valid MRC file: ``read_mrc``
must return a finite float32 volume (z, y, x) or raise ``CryoDataError`` — nothing else.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryomonai.data import validate_volumes
from cryomonai.data.extract import PickExtractor, extract_subtomograms
from cryomonai.data.splits import label_subset
from cryomonai.engines import load_pretrained_encoder
from cryomonai.engines.checkpoints import RunInfo
from cryomonai.errors import ConfigError, CryoDataError, CryoError
from cryomonai.io import atomic_write, read_mrc, read_particle_table, write_mrc, write_particle_table
from cryomonai.networks import Classifier, build_encoder
from cryomonai.ssl import build_method
from cryomonai.transforms import eval_transform

BOX = 6  # edge of the tiny subtomograms (voxels)


# ---- helpers (small copies of those in the per-module tests) ------------------------------------


def _volume(shape: tuple[int, ...] = (BOX,) * 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _raw_mrc(path: Path, data: np.ndarray) -> Path:
    """Write ``data`` with mrcfile directly, in its own dtype and shape (bypassing our checks)."""
    with mrcfile.new(path, overwrite=True) as mrc:
        if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
            with pytest.warns(RuntimeWarning):  # mrcfile's header statistics of NaN/Inf
                mrc.set_data(data)
        else:
            mrc.set_data(data)
    return path


def _table(folder: Path, paths: list[str], labels: list[str], name: str = "t.csv") -> Path:
    """A CSV particle table (paths relative to ``folder``), with the subtomograms it lists written."""
    for p in set(paths):
        if not (folder / p).exists():
            (folder / p).parent.mkdir(parents=True, exist_ok=True)
            write_mrc(folder / p, _volume())
    pd.DataFrame({"path": paths, "label": labels}).to_csv(folder / name, index=False)
    return folder / name


def _rb3d_classifier() -> Classifier:
    torch.manual_seed(0)
    return Classifier(build_encoder("rb3d", channels=8), num_classes=2)


def _moco_checkpoint(path: Path, channels: int = 8, encoder_info: str | None = "rb3d") -> Path:
    """A pretraining checkpoint of MoCo on RB3D; ``encoder_info`` is what its run info claims."""
    torch.manual_seed(1)
    ckpt = {"model": build_method("moco", build_encoder("rb3d", channels=channels), queue_size=8).state_dict()}
    if encoder_info is not None:
        ckpt["run_info"] = RunInfo(task="pretrain", encoder=encoder_info, method="moco").state_dict()
    torch.save(ckpt, path)
    return path


def _under_a_file(tmp_path: Path, name: str) -> Path:
    """A path whose parent is a regular file: unwritable even as root (chmod would not stop root)."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file, not a folder")
    return blocker / name


def _picks_outside(tmp_path: Path) -> Path:
    """A tiny tomogram (16, 24, 24) and a picks table whose row 2 lies outside it (x = 40 > 24)."""
    write_mrc(tmp_path / "tomo.mrc", _volume((16, 24, 24)))
    df = pd.DataFrame({"tomogram": ["tomo.mrc"] * 2, "x": [12.0, 40.0], "y": [12.0, 12.0], "z": [8.0, 8.0]})
    return write_particle_table(df, tmp_path / "picks.csv", class_names=[])


# ---- the cases: each returns (the call that must fail, the file/row the message must name) -------

Case = Callable[[Path], tuple[Callable[[], object], str]]


def _truncated_mrc(tmp: Path):
    path = write_mrc(tmp / "cut.mrc", _volume())
    path.write_bytes(path.read_bytes()[:-10])
    return lambda: read_mrc(path), "cut.mrc"


def _unsupported_mode(tmp: Path):
    path = _raw_mrc(tmp / "complex.mrc", _volume().astype(np.complex64))  # mode 4
    return lambda: read_mrc(path), "complex.mrc"


def _unknown_mode_number(tmp: Path):
    path = write_mrc(tmp / "packed.mrc", _volume())
    data = bytearray(path.read_bytes())
    data[12:16] = struct.pack("<i", 101)  # the header's mode word: 4-bit packed data
    path.write_bytes(bytes(data))
    return lambda: read_mrc(path), "packed.mrc"


def _not_an_mrc(tmp: Path):
    path = tmp / "notes.mrc"
    path.write_bytes(b"this is not a map " * 100)
    return lambda: read_mrc(path), "notes.mrc"


def _image_not_volume(tmp: Path):
    path = _raw_mrc(tmp / "image.mrc", _volume((BOX, BOX)))
    return lambda: read_mrc(path), "image.mrc"


def _non_cubic(tmp: Path):
    path = write_mrc(tmp / "flat.mrc", _volume((BOX, BOX, BOX - 2)))
    return lambda: validate_volumes([path]), "flat.mrc"


def _wrong_box(tmp: Path):
    path = write_mrc(tmp / "small.mrc", _volume())
    return lambda: validate_volumes([path], box=BOX + 2), "small.mrc"


def _non_finite(bad: float) -> Case:
    def case(tmp: Path):
        vol = _volume()
        vol[1, 2, 3] = bad
        path = _raw_mrc(tmp / "nan.mrc", vol)
        return lambda: read_mrc(path), "nan.mrc"

    return case


def _empty_table(tmp: Path):
    (tmp / "empty.csv").write_text("path,label\n")
    return lambda: read_particle_table(tmp / "empty.csv"), "empty.csv"


def _missing_file(tmp: Path):
    table = _table(tmp, ["vols/0.mrc", "vols/1.mrc"], ["a", "b"])
    (tmp / "vols" / "1.mrc").unlink()
    return lambda: read_particle_table(table), "t.csv, row 2"


def _unknown_label(tmp: Path):
    table = _table(tmp, ["vols/0.mrc", "vols/1.mrc", "vols/2.mrc"], ["a", "b", "actin"])
    return lambda: read_particle_table(table, class_names=["a", "b"]), "t.csv, row 3"


def _duplicate(tmp: Path):
    table = _table(tmp, ["vols/0.mrc", "vols/1.mrc", "vols/0.mrc"], ["a", "b", "a"])
    return lambda: read_particle_table(table), "t.csv, row 3"


def _empty_class(tmp: Path):
    labels = ["a"] * 4 + ["b"] * 4  # class "c" of the model has no training example at all
    return lambda: label_subset(labels, 0.25, seed=0, classes=["a", "b", "c"]), "class 'c'"


def _pick_outside(tmp: Path):
    picks = _picks_outside(tmp)
    return lambda: extract_subtomograms(picks, tmp / "out", box=4, edge="error", progress=False), "picks.csv, row 2"


def _corrupt_checkpoint(tmp: Path):
    (tmp / "junk.pt").write_bytes(b"not a checkpoint")
    return lambda: load_pretrained_encoder(_rb3d_classifier(), tmp / "junk.pt"), "junk.pt"


def _foreign_checkpoint(tmp: Path):
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp / "foreign.pt")
    return lambda: load_pretrained_encoder(_rb3d_classifier(), tmp / "foreign.pt"), "foreign.pt"


def _other_encoder_checkpoint(tmp: Path):
    ckpt = _moco_checkpoint(tmp / "resnet.pt", encoder_info="resnet10")  # run info: pretrained with resnet10
    return lambda: load_pretrained_encoder(_rb3d_classifier(), ckpt, encoder="rb3d"), "resnet.pt"


def _other_encoder_shape_checkpoint(tmp: Path):
    ckpt = _moco_checkpoint(tmp / "wide.pt", channels=16, encoder_info=None)  # same names, other shapes
    return lambda: load_pretrained_encoder(_rb3d_classifier(), ckpt), "wide.pt"


def _unwritable_mrc(tmp: Path):
    path = _under_a_file(tmp, "out.mrc")
    return lambda: write_mrc(path, _volume()), "not_a_folder/out.mrc"


def _unwritable_proc(tmp: Path):
    return lambda: write_mrc("/proc/cryomonai_out.mrc", _volume()), "/proc/cryomonai_out.mrc"


def _unwritable_table(tmp: Path):
    path = _under_a_file(tmp, "particles.star")
    df = pd.DataFrame({"path": ["a.mrc"], "label": ["ribosome"]})
    return lambda: write_particle_table(df, path), "not_a_folder/particles.star"


def _unwritable_extraction(tmp: Path):
    picks, out = _picks_outside(tmp), _under_a_file(tmp, "extracted")
    return lambda: extract_subtomograms(picks, out, box=4, progress=False), "not_a_folder/extracted"


CASES: dict[str, Case] = {
    "truncated MRC": _truncated_mrc,
    "unsupported MRC mode": _unsupported_mode,
    "MRC mode 101 (4-bit)": _unknown_mode_number,
    "not an MRC file": _not_an_mrc,
    "2D image, not a volume": _image_not_volume,
    "non-cubic volume": _non_cubic,
    "size differs from the box": _wrong_box,
    "NaN voxels": _non_finite(np.nan),
    "Inf voxels": _non_finite(np.inf),
    "empty table": _empty_table,
    "row with a missing file": _missing_file,
    "unknown class label": _unknown_label,
    "duplicate particle": _duplicate,
    "label fraction leaves a class empty": _empty_class,
    "pick outside the tomogram": _pick_outside,
    "corrupt checkpoint": _corrupt_checkpoint,
    "foreign checkpoint": _foreign_checkpoint,
    "checkpoint of another encoder": _other_encoder_checkpoint,
    "checkpoint of another encoder width": _other_encoder_shape_checkpoint,
    "unwritable MRC output": _unwritable_mrc,
    "unwritable output under /proc": _unwritable_proc,
    "unwritable table output": _unwritable_table,
    "unwritable extraction folder": _unwritable_extraction,
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_stops_with_one_line_naming_the_place_and_a_fix(tmp_path: Path, case: Case) -> None:
    call, where = case(tmp_path)
    with pytest.raises(CryoError) as info:
        call()
    # the checkpoint is fine there: the run's encoder (a configuration) does not fit it
    configuration = case in (_other_encoder_checkpoint, _other_encoder_shape_checkpoint)
    assert type(info.value) is (ConfigError if configuration else CryoDataError), type(info.value)
    message = str(info.value)
    assert "\n" not in message, message
    assert where in message, message
    assert " — fix: " in message and info.value.fix, message
    assert message.startswith(info.value.where), message


def test_simulate_into_an_unwritable_folder(tmp_path: Path) -> None:
    from cryomonai.simulate.dataset import simulate_dataset

    out = _under_a_file(tmp_path, "sim")
    with pytest.raises(CryoDataError, match=r"not_a_folder/sim(\.partial)?: .* — fix: "):
        simulate_dataset(out, n_per_class=1, box=8, classes=("1bxn",), workers=0, progress=False)


# ---- a constant volume: a valid (if useless) input; normalising it must stay finite -------------


@pytest.mark.parametrize("value", [0.0, 0.1, 3.7, -1e6])
def test_constant_volume_normalises_to_a_finite_constant(tmp_path: Path, value: float) -> None:
    """No NaN from a zero standard deviation, in the transforms and in extraction.

    A constant box is not an error (a box extracted from an empty or padded region is constant);
    normalisation must leave it finite and constant, never NaN.
    """
    vol = np.full((BOX,) * 3, value, np.float32)
    read, _ = read_mrc(write_mrc(tmp_path / "flat.mrc", vol))
    out = eval_transform()({"image": torch.as_tensor(read)[None]})["image"]
    assert torch.isfinite(out).all() and out.unique().numel() == 1 and float(out.abs().max()) <= 1.0
    write_mrc(tmp_path / "tomo.mrc", np.full((12, 12, 12), value, np.float32))
    pick = pd.Series({"tomogram_path": str(tmp_path / "tomo.mrc"), "source_box": BOX, "cz": 6, "cy": 6, "cx": 6})
    box = PickExtractor(BOX, normalise=True)(pick)
    assert box.shape == (BOX,) * 3 and np.isfinite(box).all() and np.abs(box).max() < 1e-3


# ---- fuzzing the MRC reader ---------------------------------------------------------------------

_HEADER_BYTES = 1024
_VALID = _volume((3, 4, 5), seed=1)
#: byte offsets of the header words that matter most: nx, ny, nz, mode, mx, my, mz, cella (x, y, z),
#: nsymbt, map, machst (MRC2014); a random byte elsewhere rarely changes anything
_HEADER_WORDS = (0, 4, 8, 12, 28, 32, 36, 40, 44, 48, 92, 208, 212)
_BYTE_EDIT = st.tuples(st.integers(0, _HEADER_BYTES - 1), st.integers(0, 255).map(lambda v: bytes([v])))
_SPECIAL = st.sampled_from([0, -1, 1, 2, 3, 4, 5, 6, 12, 101, 2**31 - 1])  # sizes, modes, edge values
_WORD = st.one_of(
    _SPECIAL.map(lambda v: struct.pack("<i", v)),
    _SPECIAL.map(lambda v: struct.pack("<i", v)),  # twice: as likely as the two below together
    st.integers(-(2**31), 2**31 - 1).map(lambda v: struct.pack("<i", v)),
    st.floats(width=32).map(lambda v: struct.pack("<f", v)),
)
_WORD_EDIT = st.tuples(st.sampled_from(_HEADER_WORDS), _WORD)


@pytest.fixture(scope="module")
def valid_mrc_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A valid MRC file (3, 4, 5) float32: 1024 header bytes then 240 data bytes."""
    return write_mrc(tmp_path_factory.mktemp("fuzz") / "valid.mrc", _VALID, voxel_size=2.5).read_bytes()


# tmp_path is shared by the examples (each overwrites fuzzed.mrc), hence the suppressed health check
@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(st.one_of(_WORD_EDIT, _BYTE_EDIT), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, _HEADER_BYTES + _VALID.nbytes)),
    mmap=st.booleans(),
)
def test_read_mrc_on_mutated_files_returns_a_volume_or_a_clear_error(
    tmp_path: Path, valid_mrc_bytes: bytes, edits: list[tuple[int, bytes]], cut: int | None, mmap: bool
) -> None:
    data = bytearray(valid_mrc_bytes)
    for offset, value in edits:
        data[offset : offset + len(value)] = value
    path = tmp_path / "fuzzed.mrc"
    path.write_bytes(bytes(data[:cut] if cut is not None else data))
    try:
        volume, voxel = read_mrc(path, mmap=mmap)
    except CryoDataError as err:
        assert "\n" not in str(err) and "fuzzed.mrc" in str(err) and err.fix
        return
    assert isinstance(volume, np.ndarray) and volume.ndim == 3 and volume.size > 0
    assert np.isfinite(voxel) and voxel > 0
    if not mmap:  # a memory map keeps the stored dtype and is not checked for NaN (see read_mrc)
        assert volume.dtype == np.float32 and np.isfinite(volume).all()


def test_fuzz_baseline_reads_the_unmutated_file(tmp_path: Path, valid_mrc_bytes: bytes) -> None:
    """The fuzz test's starting point is itself valid (else every example would be an error)."""
    (tmp_path / "v.mrc").write_bytes(valid_mrc_bytes)
    volume, voxel = read_mrc(tmp_path / "v.mrc")
    np.testing.assert_array_equal(volume, _VALID)
    assert voxel == pytest.approx(2.5)


# ---- atomic writes: the file system's refusals become one line, other errors pass unchanged ------


def test_full_disk_is_a_clear_error_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    with pytest.raises(CryoDataError, match=r"out\.bin: ran out of space while writing \(No space left on device\)"
                                            r".*the previous file is kept — fix: free "):
        with atomic_write(tmp_path / "out.bin") as f:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what write() raises on a full disk
    assert list(tmp_path.iterdir()) == []


def test_an_unrelated_os_error_in_the_writer_is_not_blamed_on_the_output(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="elsewhere.txt"):
        with atomic_write(tmp_path / "out.txt", "w"):
            (tmp_path / "elsewhere.txt").read_text()  # the writer's own bug, not the output's folder
    assert list(tmp_path.iterdir()) == []
