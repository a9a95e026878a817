"""Pretraining without picks: random subvolumes of whole tomograms, sampled by TorchIO.

Self-supervised pretraining needs no labels, and with this module no picks either: every tomogram
becomes a :class:`torchio.Subject`, a TorchIO patch sampler draws ``box``-sized subvolumes from it
and a :class:`torchio.Queue` keeps a shuffled buffer of patches from several tomograms, as TorchIO
does for patch-based training. :class:`TomogramPatchDataset` hands each patch to the same SSL view
transform as a subtomogram dataset would, so ``pretrain.json`` runs unchanged on top of it (the
bundle overlay ``configs/pretrain_tomograms.json``).

* **Reading**: an MRC tomogram is memory-mapped (TorchIO crops copy only the patch, so a tomogram
  larger than the memory is read patch by patch); of an OME-Zarr tomogram the resolution level
  chosen for ``voxel_size`` (:func:`~cryomonai.io.tomogram.choose_level`) is read into memory, also
  from a URL (``https://``, ``s3://``, ``file://``; :mod:`cryomonai.io.stores`), where that level is
  downloaded once per process.
* **Voxel size**: with ``voxel_size`` (Å) a patch of ``round(box · voxel_size / tomogram voxel)``
  voxels is drawn and Fourier-cropped to ``box³`` (as extraction does).
* **Where patches come from** (``sampler``):

  - ``"uniform"``: anywhere in the tomogram (:class:`torchio.UniformSampler`);
  - ``"density"``: :class:`torchio.WeightedSampler` over :func:`density_map`, a local-contrast
    score, so empty ice is drawn less often than particles;
  - ``"mask"``: :class:`torchio.WeightedSampler` over the user's masks (``masks``, one per
    tomogram, same shape; 0 = never).

* **Memory**: before anything is read, the host memory the run will hold is estimated
  (:func:`memory_estimate`) and a run that would not fit is refused in one line naming the
  tomogram, the estimate, what is available and the fix.

Random numbers come from torch's global generator (TorchIO's samplers and queue), so the bundle's
seed and its checkpointed RNG state make a run reproducible and resumable.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torchio as tio
from monai.data import MetaTensor
from scipy import ndimage
from torch.utils.data import Dataset

from cryomonai.data.extract import fourier_resize
from cryomonai.data.memory import check_memory
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io.stores import is_url
from cryomonai.io.tomogram import TomogramLevel, choose_level, open_tomogram, tomogram_levels

__all__ = ["SAMPLERS", "TomogramPatchDataset", "density_map", "memory_estimate"]

SAMPLERS: tuple[str, ...] = ("uniform", "density", "mask")
_MAP = "sampling_map"
#: bytes per voxel of TorchIO's WeightedSampler at its peak: the float64 map, its flattened copy, the
#: normalised copy and the cumulative sum (``process_probability_map`` + ``get_cumulative_distribution_function``)
_WEIGHTED_BYTES = 32
_KEPT_LEVELS = 4  # levels read whole that stay in memory (:func:`_zarr_level`'s cache)


def _read_level(path: Any, level: str = "") -> tuple[torch.Tensor, np.ndarray]:
    """TorchIO reader: ``(1, D, H, W)`` of one tomogram level and an identity affine.

    MRC: memory-mapped, no copy. OME-Zarr: the level read once per process (:func:`_zarr_level`), not
    on every visit of the queue to the tomogram.
    """
    data = open_tomogram(path, level)
    if isinstance(data, np.memmap) and data.dtype.isnative:  # copy-on-write map: lazy, and writable for torch
        return torch.from_numpy(np.memmap(data.filename, dtype=data.dtype, mode="c", offset=data.offset,
                                          shape=data.shape))[None], np.eye(4)
    return _zarr_level(str(path), level), np.eye(4)


class _UrlScalarImage(tio.ScalarImage):
    """A ScalarImage at a URL: its path is never looked for on disk (TorchIO re-creates images per patch)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{"verify_path": False, **kwargs})


class _UrlLabelMap(tio.LabelMap):
    """A LabelMap at a URL (see :class:`_UrlScalarImage`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{"verify_path": False, **kwargs})


def _image(path: str, level: str, label: bool = False) -> tio.Image:
    """A TorchIO image (``label``: a LabelMap) of one tomogram level, read on first use by :func:`_read_level`.

    TorchIO makes a ``Path`` of the path (``https://h`` → ``https:/h``): a URL goes to the reader as given.
    """
    if is_url(path):
        kind = _UrlLabelMap if label else _UrlScalarImage
        return kind(path, reader=functools.partial(_read_url_level, path, level))
    kind = tio.LabelMap if label else tio.ScalarImage
    return kind(path, reader=functools.partial(_read_level, level=level))


def _read_url_level(url: str, level: str, _path: Any) -> tuple[torch.Tensor, np.ndarray]:
    """:func:`_read_level` of ``url`` (TorchIO's own path argument, a mangled URL, is ignored)."""
    return _read_level(url, level)


@functools.lru_cache(maxsize=4)
def _zarr_level(path: str, level: str) -> torch.Tensor:
    """One OME-Zarr (or non-native byte order MRC) level in memory, ``(1, D, H, W)``; the last few are kept."""
    data = np.asarray(open_tomogram(path, level)[:, :, :])
    return torch.from_numpy(data.astype(data.dtype.newbyteorder("="), copy=False))[None]


def density_map(volume: Any, box: int) -> np.ndarray:
    """Where the particles are: a local-contrast score per voxel, uint8 (0–255), the tomogram's shape.

    The tomogram is block-averaged by ``b = max(1, box // 4)`` (a low-pass that keeps particles and
    drops pixel noise), the standard deviation in a window of half the box is taken around every
    coarse voxel, and the score is the square of how far it lies above the tomogram's median
    contrast (empty ice), floored at 2 % of the range so that every place can still be drawn.

    Example:
        >>> vol = np.random.default_rng(0).normal(0, 0.1, (32, 32, 32)).astype(np.float32)
        >>> vol[6:9, 6:9, 6:9] += 3.0  # one "particle"
        >>> score = density_map(vol, box=8)
        >>> score.shape, bool(score[7, 7, 7] > 20 * score[24, 24, 24])
        ((32, 32, 32), True)
    """
    shape = tuple(int(n) for n in volume.shape)
    b = max(1, int(box) // 4)
    coarse_shape = tuple(max(1, n // b) for n in shape)
    coarse = np.empty(coarse_shape, np.float32)
    for z in range(coarse_shape[0]):  # one slab of b z-slices at a time: bounded memory for a memory map
        slab = np.asarray(volume[z * b:(z + 1) * b, : coarse_shape[1] * b, : coarse_shape[2] * b], np.float32)
        coarse[z] = slab.reshape(slab.shape[0], coarse_shape[1], b, coarse_shape[2], b).mean((0, 2, 4))
    window = max(2, int(round(box / (2 * b))))  # about a particle's size: half the box
    mean = ndimage.uniform_filter(coarse, window, mode="reflect")
    std = np.sqrt(np.maximum(ndimage.uniform_filter(coarse * coarse, window, mode="reflect") - mean * mean, 0))
    score = np.maximum(std - np.median(std), 0) ** 2  # squared: contrast well above the ice's dominates
    score = score / score.max() if score.max() > 0 else np.ones_like(score)
    score = np.maximum(score, 0.02)
    full = np.repeat(np.repeat(np.repeat(score, b, 0), b, 1), b, 2)
    full = np.pad(full, [(0, max(0, n - m)) for n, m in zip(shape, full.shape)], mode="edge")[
        : shape[0], : shape[1], : shape[2]]
    return np.round(full * 255).astype(np.uint8)


def _whole_bytes(level: TomogramLevel) -> int:
    """Bytes of ``level`` if it is read into memory whole (OME-Zarr, a URL, a non-native MRC), else 0 (memory-mapped)."""
    data = open_tomogram(level.path, level.level)
    if isinstance(data, np.memmap) and data.dtype.isnative:
        return 0
    return int(np.prod(level.shape)) * np.dtype(data.dtype).itemsize


def memory_estimate(levels: Sequence[TomogramLevel], sampler: str) -> tuple[str, dict[str, int]]:
    """The host memory a pretraining on ``levels`` with ``sampler`` holds at its peak, in bytes by part,
    and the tomogram that needs the most.

    Parts: ``"weighted sampler (float64 map + CDF)"`` (``density``/``mask``: 32 bytes per voxel of the
    largest tomogram, TorchIO's map as float64, flattened, normalised and summed), ``"density maps
    (uint8)"`` (``density``: 1 byte per voxel of every tomogram, kept for the run) and ``"tomogram
    levels read whole"`` (OME-Zarr or URL levels, the largest few kept in a cache). The density maps
    are computed slab by slab from the tomogram, with transient float32 copies (~17 bytes per voxel)
    that the weighted sampler's peak exceeds.
    """
    voxels = [int(np.prod(lv.shape)) for lv in levels]
    whole = [_whole_bytes(lv) for lv in levels]
    weighted = sampler in ("density", "mask")
    need = [(_WEIGHTED_BYTES * n if weighted else 0) + w for n, w in zip(voxels, whole)]
    parts = {"weighted sampler (float64 map + CDF)": _WEIGHTED_BYTES * max(voxels) if weighted else 0,
             "density maps (uint8)": sum(voxels) if sampler == "density" else 0,
             "tomogram levels read whole": sum(sorted(whole)[-_KEPT_LEVELS:])}
    return levels[need.index(max(need))].path, parts


class TomogramPatchDataset(Dataset):
    """Random ``box³`` subvolumes of whole tomograms through a :class:`torchio.Queue` (see the module docstring).

    Items are ``{"image": MetaTensor (1, box, box, box) float32, "tomogram": path, "location": (6,)
    tensor (z0, y0, x0, z1, y1, x1) of the patch in the tomogram's voxels}`` passed through
    ``transform`` (the SSL views); ``len`` is ``patches_per_epoch``. Use it with a ``DataLoader``
    of ``shuffle=False`` and ``num_workers=0`` (the queue shuffles and has its own workers).

    Args:
        tomograms: tomogram paths (MRC or OME-Zarr), or one path.
        box: patch edge in output voxels.
        transform: applied to every item (e.g. the bundle's view pipeline).
        voxel_size: output voxel size in Å (None: each tomogram's own).
        sampler: ``"uniform"``, ``"density"`` or ``"mask"``.
        masks: with ``sampler="mask"``, one mask per tomogram (MRC or OME-Zarr, same shape).
        samples_per_volume: patches drawn from a tomogram each time it is visited.
        queue_length: patches kept in the queue (from ``queue_length / samples_per_volume`` tomograms).
        patches_per_epoch: patches in one epoch.
        num_workers: the queue's loader processes.

    Raises:
        ConfigError: no tomograms, an unknown sampler, a mask count that does not match.
        CryoDataError: an unreadable tomogram, missing or mis-shaped
            masks, a tomogram smaller than a patch, not enough host memory (:func:`memory_estimate`).
    """

    def __init__(
        self,
        tomograms: Sequence[str | os.PathLike] | str | os.PathLike,
        box: int,
        transform: Callable | None = None,
        voxel_size: float | None = None,
        sampler: str = "uniform",
        masks: Sequence[str | os.PathLike] | None = None,
        samples_per_volume: int = 32,
        queue_length: int = 256,
        patches_per_epoch: int = 1024,
        num_workers: int = 0,
    ) -> None:
        paths = [str(tomograms)] if isinstance(tomograms, (str, os.PathLike)) else [str(t) for t in tomograms]
        if not paths:
            raise ConfigError("pretrain_tomograms", "lists no tomogram", "give one or more MRC/OME-Zarr tomograms")
        if sampler not in SAMPLERS:
            raise ConfigError("pretrain_sampler", f"unknown sampler {sampler!r}", f"use one of {list(SAMPLERS)}")
        if sampler == "mask" and (masks is None or len(masks) != len(paths)):
            raise ConfigError("pretrain_masks", f"{0 if masks is None else len(masks)} masks for {len(paths)} tomograms",
                              "give one mask per tomogram (same shape), or use sampler 'uniform' / 'density'")
        self.box, self.transform, self.patches_per_epoch = int(box), transform, int(patches_per_epoch)
        subjects, sizes = [], set()
        levels = [choose_level(tomogram_levels(path), voxel_size) for path in paths]
        where, parts = memory_estimate(levels, sampler)
        check_memory(f"{where} ({sampler} sampler)", parts, "pretrain on a coarser level (a larger pretrain_voxel_size)"
                     + (", with the 'uniform' sampler" if sampler != "uniform" else "") + " or on a node with more memory")
        for i, (path, level) in enumerate(zip(paths, levels)):
            source = self.box if voxel_size is None else max(2, int(round(self.box * float(voxel_size) / level.voxel_size)))
            if any(n < source for n in level.shape):
                raise CryoDataError(path, f"is {level.shape} voxels, smaller than a {source}-voxel patch",
                                    "give a smaller box or a coarser voxel_size")
            sizes.add(source)
            image = _image(path, level.level)
            subject = {"image": image}
            if sampler == "density":
                score = density_map(open_tomogram(path, level.level), source)
                subject[_MAP] = tio.LabelMap(tensor=torch.from_numpy(score)[None])
            elif sampler == "mask":
                mask_level = choose_level(tomogram_levels(masks[i]), level.voxel_size)
                if tuple(mask_level.shape) != tuple(level.shape):
                    raise CryoDataError(masks[i], f"is {mask_level.shape} voxels, its tomogram {level.shape}",
                                        "give a mask of the tomogram's shape")
                subject[_MAP] = _image(str(masks[i]), mask_level.level, label=True)
            subjects.append(tio.Subject(subject, tomogram=path))
        if len(sizes) > 1:
            raise ConfigError("pretrain_tomograms", f"voxel sizes need patches of {sorted(sizes)} voxels",
                              "set voxel_size so all tomograms are resampled alike")
        self.source_box = sizes.pop()
        patch_sampler = (tio.UniformSampler(self.source_box) if sampler == "uniform"
                         else tio.WeightedSampler(self.source_box, probability_map=_MAP))
        with warnings.catch_warnings():  # TorchIO warns that a subject without a transform is not augmented
            warnings.simplefilter("ignore")
            self.queue = tio.Queue(tio.SubjectsDataset(subjects), max_length=int(queue_length),
                                   samples_per_volume=int(samples_per_volume), sampler=patch_sampler,
                                   num_workers=int(num_workers), verbose=False)

    def __len__(self) -> int:
        return self.patches_per_epoch

    def __getitem__(self, index: int) -> Any:
        patch = self.queue[index]  # the queue ignores the index: its next shuffled patch
        data = patch["image"][tio.DATA][0].float()  # (s, s, s)
        if self.source_box != self.box:
            data = fourier_resize(data, (self.box,) * 3)
        item = {"image": MetaTensor(data[None].contiguous()), "tomogram": patch["tomogram"],
                "location": patch[tio.LOCATION]}  # (z0, y0, x0, z1, y1, x1) of the patch, tomogram voxels
        return self.transform(item) if self.transform is not None else item
