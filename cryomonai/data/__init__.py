"""From particle tables to MONAI data: data dicts, stratified splits, nested label subsets, caching,
and patches of whole tomograms for pretraining without picks (TorchIO).

Names are imported on first use (PEP 562): ``cryomonai.data.stratified_split`` needs only numpy,
while the datasets import torch and MONAI (the simulator's worker processes import this package's
light modules and must not wait for MONAI).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs only
    from cryomonai.data.dataset import VolumeStackDataset, build_volume_cache, table_to_data_dicts, validate_volumes
    from cryomonai.data.labelled import label_fraction_subset, read_labelled_rows, save_labelled_rows
    from cryomonai.data.splits import label_subset, stratified_split
    from cryomonai.data.tomo_patches import TomogramPatchDataset, density_map

_SOURCES = {
    "VolumeStackDataset": "dataset",
    "build_volume_cache": "dataset",
    "table_to_data_dicts": "dataset",
    "validate_volumes": "dataset",
    "label_fraction_subset": "labelled",
    "read_labelled_rows": "labelled",
    "save_labelled_rows": "labelled",
    "label_subset": "splits",
    "stratified_split": "splits",
    "TomogramPatchDataset": "tomo_patches",
    "density_map": "tomo_patches",
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first access."""
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
