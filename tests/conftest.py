"""Shared fixtures."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest


def build_copick_project(folder: Path, runs: dict[str, Path], classes: Sequence[str], user_id: str = "curator",
                         session_id: str = "0", tomo_type: str = "wbp", levels: int = 2) -> Path:
    """A local copick project made with copick's own API from simulated tomograms.

    ``runs`` maps a run name to the picks STAR of a simulated tomogram (``tomogram.mrc`` next to it):
    each run gets that tomogram as ``tomo_type`` at its voxel size (an OME-Zarr pyramid of ``levels``)
    and one pick set per class (points in Å). Returns the configuration JSON.
    """
    import copick

    from cryomonai.data.extract import read_picks
    from cryomonai.io import read_mrc

    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "copick_config.json"
    objects = [{"name": c, "is_particle": True, "label": i + 1, "radius": 60.0} for i, c in enumerate(classes)]
    config.write_text(json.dumps({"config_type": "filesystem", "name": "simulated", "pickable_objects": objects,
                                  "overlay_root": f"local://{folder / 'overlay'}", "overlay_fs_args": {"auto_mkdir": True}}))
    root = copick.from_file(str(config))
    for name, star in runs.items():
        volume, voxel = read_mrc(Path(star).parent / "tomogram.mrc")
        run = root.new_run(name)
        run.new_voxel_spacing(voxel).new_tomogram(tomo_type).from_numpy(volume, levels=levels)
        df = read_picks(star).df
        for cls in classes:
            rows = df[df["label"] == cls]
            picks = run.new_picks(cls, session_id=session_id, user_id=user_id)
            picks.from_numpy(rows[["x", "y", "z"]].to_numpy(float) * voxel)
    return config


@pytest.fixture(scope="session")
def copick_project() -> Callable[..., Path]:
    """:func:`build_copick_project` (skips the test where copick is not installed)."""
    pytest.importorskip("copick")
    return build_copick_project

