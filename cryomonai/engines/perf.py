"""Performance switches of the ``cryo_ssl`` bundle: memory format, mixed precision, ``torch.compile``.

The bundle's keys (``configs/common.json``) reach MONAI's engines through three small pieces:

* :func:`prepare_network` — the network on the device in ``memory_format`` (``channels_last``:
  ``torch.channels_last_3d``, NDHWC, what oneDNN on CPU and cuDNN on GPU run fastest: 1.3× for a
  MoCo step of ``rb3d`` on a 2-core CPU), compiled **in place** with ``nn.Module.compile`` when
  ``compile`` is set: the module keeps its type, submodules and ``state_dict`` keys, so checkpoints,
  forward hooks and :func:`~cryomonai.engines.unwrap_ssl_method` see the same module (MONAI's own
  ``compile=True`` would hand the engine a ``torch.compile`` wrapper instead);
* :class:`PrepareBatchMemoryFormat` — the supervised engines' ``prepare_batch``: the image batch
  ``(B, C, D, H, W)`` (axes z, y, x) moved to the device in ``memory_format``, as a plain tensor
  (MONAI's metadata is not needed past the data loader, and a compiled network wants plain tensors);
* :class:`AutocastInferer` — the supervised engines' ``inferer``: the forward under
  ``torch.autocast`` on the input's device. MONAI's engines autocast on CUDA only
  (``torch.autocast("cuda", **amp_kwargs)``), so this is what makes ``amp`` (bf16) work on CPU;
  on CUDA it nests inside MONAI's autocast with the same dtype.

The SSL step (:func:`~cryomonai.engines.ssl_iteration`) takes the memory format from the trainer's
``to_kwargs`` and autocasts itself on any device. :class:`TrackMeta` runs the pretraining views
without MONAI's metadata tracking (the bundle's ``track_meta``): the views pipeline is 1.7× faster
on plain tensors, and on a 2-core CPU the views' cost is what separates the bundle's pretraining
from a bare training loop.

Example:
    >>> import torch
    >>> from cryomonai.networks import build_encoder
    >>> net = prepare_network(build_encoder("rb3d", channels=8), "cpu", torch.channels_last_3d)
    >>> next(net.parameters()).is_contiguous(memory_format=torch.channels_last_3d)
    True
    >>> x, y = PrepareBatchMemoryFormat(torch.channels_last_3d)({"image": torch.randn(2, 1, 8, 8, 8),
    ...                                                          "label": torch.tensor([0, 1])}, "cpu")
    >>> AutocastInferer(enabled=True)(x, net).dtype  # bf16 inside, float32 out
    torch.float32
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from monai.data import get_track_meta, set_track_meta
from monai.engines.utils import PrepareBatch, default_prepare_batch
from monai.inferers import Inferer
from monai.transforms import Randomizable, Transform
from monai.utils import convert_to_tensor, set_determinism
from torch import nn

__all__ = ["AutocastInferer", "PrepareBatchMemoryFormat", "TrackMeta", "native_bf16", "prepare_network", "seed_run"]


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` runs bfloat16 natively, so that bf16 autocast (the bundle's ``amp``) is faster.

    CUDA: compute capability ≥ 8.0 (Ampere and newer). CPU: AVX512-BF16 or AMX tiles (Intel Cooper
    Lake / Sapphire Rapids and newer, AMD Zen 4 and newer), as PyTorch's own dispatch sees them, and
    not capped below them by ``ONEDNN_MAX_CPU_ISA`` (e.g. ``AVX2``, how a run imitates an older
    processor) — without them oneDNN emulates bf16 and autocast would be slower than float32. On a 2-core
    Xeon with AMX a fine-tuning step of ``rb3d_bn`` at 16³ runs 1.45–1.55× faster under bf16 autocast
    (``docs/records/amp_parity/``, with the accuracy parity runs; ``python -m benchmarks.bench_finetune``,
    stage a, measures it: ``docs/records/benchmarks/bench_finetune_cpu.json``).
    """
    device = torch.device(device)
    if device.type == "cuda":
        # without a visible GPU (a config parsed for CUDA elsewhere) the CUDA default, bf16, stands
        return not torch.cuda.is_available() or torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap and cap != "ALL" and not any(key in cap for key in ("BF16", "AMX")):
        return False  # oneDNN told to stop below the bf16 instructions (e.g. AVX2): it would emulate bf16
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's ISA probes (private, stable since 2.2)
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def seed_run(seed: int = 0, deterministic: bool = True) -> None:
    """Seed the run (MONAI's ``set_determinism``), then choose cuDNN's kernels (the bundle's ``deterministic``).

    ``set_determinism(seed)`` seeds torch, numpy and ``random`` and also pins cuDNN to
    deterministic kernels without autotuning. With ``deterministic=False`` cuDNN instead autotunes
    (``benchmark``) and may pick non-deterministic kernels: faster on a GPU, not bit-reproducible
    there. Nothing changes on a CPU.
    """
    set_determinism(seed=seed)
    if not deterministic:
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True


def prepare_network(
    network: nn.Module,
    device: str | torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
    compile: bool = False,
    compile_kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """``network`` on ``device`` with its 5-D (conv) weights in ``memory_format``, compiled in place if asked.

    Parameters stay the same ``nn.Parameter`` objects (an optimizer built on them before still
    steps them); only tensors of 4 or 5 dimensions change layout (``Module.to``).

    Args:
        network: any module (an encoder, a classifier, :class:`~cryomonai.engines.SSLStep`).
        device: where it runs.
        memory_format: ``torch.channels_last_3d`` or ``torch.contiguous_format``.
        compile: ``network.compile(**compile_kwargs)`` (``torch.compile`` of its ``__call__``; the
            first steps are slow while it compiles).
        compile_kwargs: ``torch.compile`` arguments (``mode``, ``backend``, ``dynamic`` …).

    Returns:
        ``network`` itself.
    """
    network.to(device, memory_format=memory_format)
    if compile:
        network.compile(**dict(compile_kwargs or {}))
    return network


class PrepareBatchMemoryFormat(PrepareBatch):
    """MONAI's default batch preparation (``image``, ``label``), with the image in a memory format.

    ``image`` ``(B, C, D, H, W)`` goes to ``device`` in ``memory_format`` (tensors of another rank
    keep theirs); image and label become plain tensors (no ``MetaTensor``).

    Args:
        memory_format: e.g. ``torch.channels_last_3d``.
    """

    def __init__(self, memory_format: torch.memory_format = torch.contiguous_format) -> None:
        self.memory_format = memory_format

    def __call__(
        self, batchdata: Any, device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        image, label = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        image = convert_to_tensor(image, track_meta=False)
        if image.ndim == 5:
            image = image.contiguous(memory_format=self.memory_format)  # (B, C, D, H, W)
        return image, None if label is None else convert_to_tensor(label, track_meta=False)


class AutocastInferer(Inferer):
    """``network(inputs)`` under ``torch.autocast(inputs.device.type, dtype)`` when enabled.

    A floating-point output comes back as float32 (a loss or softmax after it runs in full
    precision). With ``enabled=False`` it is MONAI's ``SimpleInferer``.

    Args:
        enabled: autocast on (the bundle's ``amp``).
        dtype: ``torch.bfloat16`` (default; needs no loss scaling) or ``torch.float16`` (CUDA).
    """

    def __init__(self, enabled: bool = False, dtype: torch.dtype = torch.bfloat16) -> None:
        self.enabled, self.dtype = bool(enabled), dtype

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self.enabled:
            return network(inputs, *args, **kwargs)
        with torch.autocast(inputs.device.type, dtype=self.dtype):
            out = network(inputs, *args, **kwargs)
        return out.float() if isinstance(out, torch.Tensor) and out.is_floating_point() else out


class TrackMeta(Randomizable, Transform):
    """``transform(data)`` with MONAI's metadata tracking set to ``track_meta``, restored afterwards.

    With ``track_meta=False`` MONAI's transforms return plain tensors instead of ``MetaTensor``
    (:func:`monai.data.set_track_meta`), which also makes collating cheaper. The switch is
    process-wide while ``transform`` runs: use it in a data loader's worker processes or in the
    training process (``num_workers`` 0), not with thread-based loaders (``ThreadDataLoader``).
    It is ``Randomizable`` and hands its seed on to ``transform``, so a ``Compose`` around it (a
    MONAI ``Dataset`` makes one), ``monai.data.utils.set_rnd`` and the DataLoader's worker seeding
    seed ``transform`` exactly as they would without the wrapper.

    Args:
        transform: e.g. the pretraining views (:func:`cryomonai.transforms.paper_views`).
        track_meta: MONAI's metadata tracking while ``transform`` runs.

    Example:
        >>> from monai.data import MetaTensor
        >>> from monai.transforms import ScaleIntensityd
        >>> out = TrackMeta(ScaleIntensityd("image"))({"image": MetaTensor(torch.rand(1, 4, 4, 4))})
        >>> type(out["image"]).__name__
        'Tensor'
    """

    def __init__(self, transform: Callable[[Any], Any], track_meta: bool = False) -> None:
        self.transform, self.track_meta = transform, bool(track_meta)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> TrackMeta:
        super().set_random_state(seed, state)
        if isinstance(self.transform, Randomizable):
            self.transform.set_random_state(seed, state)
        return self

    def __call__(self, data: Any) -> Any:
        previous = get_track_meta()
        set_track_meta(self.track_meta)
        try:
            return self.transform(data)
        finally:
            set_track_meta(previous)
