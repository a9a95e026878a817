"""copick projects: picks and OME-Zarr tomograms in, predicted classes back out as copick picks.

`copick <https://github.com/copick/copick>`_ is the CZ cryo-ET data portal's project format: a JSON
configuration (pickable objects, storage roots) over runs, each with tomograms per voxel spacing
(OME-Zarr, read here by :mod:`cryomonai.io.omezarr`) and pick sets per (object, user, session)
whose points are in Å. This module uses copick's own API on a filesystem project (``config_type``
``filesystem``) whose configuration JSON is local and whose ``static_root`` / ``overlay_root`` are
local folders or any fsspec URL (``https://``, ``s3://``, ``file://``): tomograms on remote storage
are listed as URLs and read by chunks (:mod:`cryomonai.io.stores`):

* :func:`read_copick_picks` → a picks :class:`~cryomonai.io.ParticleTable`: one row per point,
  ``tomogram`` = the run's OME-Zarr tomogram of ``tomo_type`` at ``voxel_size``, ``x, y, z`` in its
  voxels (Å / voxel size; copick puts voxel ``i``'s centre at ``i · voxel size``, as cryomonai counts
  voxels from 0), ``label`` = the object's name, classes = the project's particle objects by their
  ``label`` id; extra columns :data:`RUN`, :data:`VOXEL_SIZE`, :data:`USER`, :data:`SESSION`.
  ``tomogram`` is a local path for a project on local disk, else the OME-Zarr image's URL.
* :func:`write_copick_predictions` → for every run and every class, one pick set under a user id of
  ours (:data:`DEFAULT_USER`), the predicted particles as points with the class probability as the
  score (a rerun replaces those sets; nobody else's are touched).

A point's position is its location plus its transform's translation (copick's ``full_positions``).
Every problem is a one-line :class:`~cryomonai.errors.CryoDataError` naming the project, run or object.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io.predictions import MAX_PROBABILITY
from cryomonai.io.table import COLUMNS, ParticleTable

__all__ = ["DEFAULT_USER", "RUN", "SESSION", "USER", "VOXEL_SIZE", "is_copick_config", "read_copick_picks",
           "write_copick_predictions"]

#: extra columns of a table read from copick
RUN, VOXEL_SIZE, USER, SESSION = "copickRun", "copickVoxelSize", "copickUserId", "copickSessionId"
#: the copick user id our predictions are written under
DEFAULT_USER = "cryomonai"


def is_copick_config(path: str | os.PathLike) -> bool:
    """True for a ``.json`` file that looks like a copick configuration (it has ``pickable_objects``)."""
    p = Path(path)
    if p.suffix.lower() != ".json" or not p.is_file():
        return False
    try:
        return "pickable_objects" in p.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _open(config: str | os.PathLike) -> Any:
    try:  # copick is an optional dependency (pip install "cryomonai[copick]"), imported when a project is opened
        import copick  # noqa: PLC0415
    except ImportError:
        raise CryoDataError(config, "is a copick project, but copick is not installed",
                            'pip install "cryomonai[copick]"') from None
    try:
        return copick.from_file(str(config))
    except (OSError, ValueError, KeyError, TypeError) as err:  # missing file, bad JSON, invalid config
        raise CryoDataError(config, f"cannot open the copick project ({type(err).__name__}: {err})",
                            "give a copick configuration JSON (config_type 'filesystem')") from None


def _tomogram_location(tomogram: Any) -> str:
    """Where a copick tomogram's OME-Zarr image is: its local folder, or its fsspec URL."""
    read_only = getattr(tomogram, "read_only", False)
    fs = tomogram.fs_static if read_only else tomogram.fs_overlay
    path = tomogram.static_path if read_only else tomogram.overlay_path
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return path if {"file", "local"} & set(protocols) else fs.unstrip_protocol(path)


def _tomogram(run: Any, voxel_size: float | None, tomo_type: str | None, where: str) -> tuple[float, Any]:
    """(voxel size, tomogram) of ``run``: ``tomo_type`` at ``voxel_size`` (default: the finest with it)."""
    found = [(vs.voxel_size, t) for vs in run.voxel_spacings for t in vs.tomograms
             if (tomo_type is None or t.tomo_type == tomo_type)
             and (voxel_size is None or abs(vs.voxel_size - float(voxel_size)) < 1e-3)]
    if not found:
        have = sorted({(vs.voxel_size, t.tomo_type) for vs in run.voxel_spacings for t in vs.tomograms})
        raise ConfigError(where, f"no tomogram of type {tomo_type or 'any'} at voxel spacing {voxel_size or 'any'} Å",
                          f"choose one of (voxel spacing, type) {have}")
    types = sorted({t.tomo_type for _, t in found})
    if tomo_type is None and len(types) > 1:
        raise ConfigError(where, f"has tomograms of types {types}", "choose one with tomo_type")
    return min(found, key=lambda vt: vt[0])


def read_copick_picks(
    config: str | os.PathLike,
    voxel_size: float | None = None,
    tomo_type: str | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    objects: Sequence[str] | None = None,
    runs: Sequence[str] | None = None,
) -> ParticleTable:
    """A copick project's picks as a labelled picks table (see the module docstring).

    Args:
        config: the project's configuration JSON.
        voxel_size: voxel spacing (Å) of the tomograms to extract from (None: the finest that has
            ``tomo_type``); coordinates are given in its voxels.
        tomo_type: tomogram type, e.g. ``"wbp"`` or ``"denoised"`` (None: the only one there is).
        user_id, session_id: the pick sets to read (None: any; but one object's picks in one run must
            then come from one pick set, so the same particle is never listed twice).
        objects: object names to read (None: every particle object of the project).
        runs: run names (None: all runs).

    Raises:
        CryoDataError: an unreadable project, an unknown object or run, no matching tomogram, picks of
            one object from several pick sets, no picks at all.
    """
    root = _open(config)
    particles = sorted((o for o in root.pickable_objects if o.is_particle), key=lambda o: (o.label, o.name))
    names = [o.name for o in particles]
    wanted = list(objects) if objects is not None else names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise ConfigError(config, f"no particle object named {unknown}", f"use some of {names}")
    all_runs = {r.name: r for r in root.runs}
    chosen = list(runs) if runs is not None else sorted(all_runs)
    missing = sorted(set(chosen) - set(all_runs))
    if missing:
        raise ConfigError(config, f"no run named {missing}", f"use some of {sorted(all_runs)}")
    rows = []
    for name in chosen:
        run = all_runs[name]
        where = f"{config}, run {name}"
        voxel, tomogram = _tomogram(run, voxel_size, tomo_type, where)
        path = _tomogram_location(tomogram)
        for obj in wanted:
            sets = [p for p in run.get_picks(object_name=obj, user_id=user_id, session_id=session_id) if p.points]
            if len(sets) > 1:
                found = ", ".join(f"{p.user_id}/{p.session_id}" for p in sets)
                raise ConfigError(f"{where}, object {obj}", f"picks from {len(sets)} pick sets ({found})",
                                  "choose one with user_id / session_id (copick_user_id, copick_session_id)")
            for picks in sets:
                xyz = picks.full_positions() / voxel  # Å → voxels of this spacing
                rows.append(pd.DataFrame({"tomogram": path, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
                                          "label": obj, RUN: name, VOXEL_SIZE: voxel, USER: picks.user_id,
                                          SESSION: picks.session_id}))
    if not rows:
        raise ConfigError(config, f"no picks of {wanted} (user {user_id or 'any'}, session {session_id or 'any'})",
                          "check the object names and the user/session ids")
    df = pd.concat(rows, ignore_index=True)
    df["label_index"] = np.array([names.index(n) for n in df["label"]], dtype=np.int64)
    return _as_table(df, names, Path(config))


def _as_table(df: pd.DataFrame, class_names: list[str], source: Path) -> ParticleTable:
    """The table's normalised columns first (see :mod:`cryomonai.io.table`), then ours."""
    n = len(df)
    front = pd.DataFrame({"path": [None] * n, "label": df["label"].astype(object), "label_index": df["label_index"],
                          "split": [None] * n, "tomogram": df["tomogram"].astype(object),
                          "x": df["x"], "y": df["y"], "z": df["z"]})
    extra = df.drop(columns=[c for c in COLUMNS if c in df])
    return ParticleTable(pd.concat([front, extra], axis=1), class_names, source)


def write_copick_predictions(
    predictions: ParticleTable,
    config: str | os.PathLike,
    user_id: str = DEFAULT_USER,
    session_id: str = "0",
) -> dict[tuple[str, str], int]:
    """Write a predictions table (read from copick, see :mod:`cryomonai.io.predictions`) back as copick picks.

    Every run of the table gets one pick set per class (``object = class``, ``user_id``,
    ``session_id``), holding the particles predicted as that class at their copick positions (Å),
    with the predicted class's probability as the score; an empty set where none was predicted, so
    a rerun leaves no stale points.

    Returns:
        the number of points written per (run, class).

    Raises:
        CryoDataError: a table not read from copick, a class that is not an object of the project.
    """
    df = predictions.df
    where = str(predictions.source or "predictions")
    for column in (RUN, VOXEL_SIZE, "x", "y", "z", "label"):
        if column not in df:
            raise CryoDataError(where, f"has no {column} column (not read from a copick project)",
                                "classify picks read from the copick project (its config JSON as the picks table)")
    root = _open(config)
    objects = {o.name for o in root.pickable_objects}
    unknown = sorted(set(predictions.class_names) - objects)
    if unknown:
        raise CryoDataError(config, f"has no pickable object for the classes {unknown}",
                            "add them to pickable_objects, or classify with the project's own classes")
    scores = pd.Series(df[MAX_PROBABILITY] if MAX_PROBABILITY in df else 1.0, index=df.index, dtype=float)
    written: dict[tuple[str, str], int] = {}
    for run_name, rows in df.groupby(RUN, sort=True):
        run = root.get_run(str(run_name))
        if run is None:
            raise CryoDataError(f"{config}", f"has no run {run_name!r}", "write to the project the picks came from")
        for cls in predictions.class_names:
            mine = (rows["label"] == cls).to_numpy()
            pos = rows.loc[mine, ["x", "y", "z"]].to_numpy(float) * rows.loc[mine, [VOXEL_SIZE]].to_numpy(float)
            picks = run.new_picks(cls, session_id=session_id, user_id=user_id, exist_ok=True)
            picks.from_numpy(pos, scores=scores.loc[rows.index[mine]].to_numpy() if mine.any() else None)
            written[str(run_name), cls] = int(mine.sum())
    return written
