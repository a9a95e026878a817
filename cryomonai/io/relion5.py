"""RELION-5 tomography particle files: centred coordinates in Å, tomograms described in ``tomograms.star``.

RELION 5 (and Warp/M exports in its format) write a particles STAR file whose ``data_particles`` loop
gives each particle's tomogram by name (``rlnTomoName``) and its position as
``rlnCenteredCoordinateX/Y/ZAngst``: Å from the **centre** of the tomogram. The tomograms are
described in a separate ``tomograms.star`` (block ``data_global``, one row per tomogram):
``rlnTomoTiltSeriesPixelSize`` (Å per unbinned tilt-series pixel), ``rlnTomoTomogramBinning``,
``rlnTomoSizeX/Y/Z`` (the tomogram's size in unbinned pixels) and ``rlnTomoReconstructedTomogram``
(the reconstructed MRC, a path relative to the RELION project, i.e. the folder that holds
``tomograms.star`` or one above it).

:func:`read_relion5_picks` turns such a file into cryomonai's picks table: for the tomogram each
particle names, the voxel coordinates (counted from 0, as :mod:`cryomonai.data.extract` expects) in
the reconstructed tomogram are::

    x = X_Å / v + n_x / 2        (likewise y, z)

with ``v = rlnTomoTiltSeriesPixelSize × rlnTomoTomogramBinning`` the tomogram's voxel size and
``n_x`` its size in voxels (from the MRC header, which must agree with ``rlnTomoSizeX / binning``
to a voxel — else it is not the tomogram the STAR file describes). ``n / 2`` is RELION's own centre
(``Tomogram::centre = size / 2`` in pixels, float division). Every input column is kept, and
:func:`cryomonai.io.predictions.write_star_and_csv` writes predictions back in the same convention:
``rlnTomoName`` and the centred Å coordinates as they came in, without voxel coordinates.

Example (coordinates only; ``tomograms`` rows as RELION writes them)::

    >>> import pandas as pd
    >>> tomos = pd.DataFrame({"rlnTomoName": ["TS_01"], "rlnTomoTiltSeriesPixelSize": [2.5],
    ...                       "rlnTomoTomogramBinning": [4.0], "rlnTomoSizeX": [1000], "rlnTomoSizeY": [800],
    ...                       "rlnTomoSizeZ": [400]})
    >>> parts = pd.DataFrame({"rlnTomoName": ["TS_01"], "rlnCenteredCoordinateXAngst": [100.0],
    ...                       "rlnCenteredCoordinateYAngst": [0.0], "rlnCenteredCoordinateZAngst": [-50.0]})
    >>> centred_to_voxels(parts, tomos, {"TS_01": (100, 200, 250)}).round(3).values.tolist()
    [[135.0, 100.0, 45.0]]
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryomonai.errors import CryoDataError
from cryomonai.io.mrc import read_mrc_header
from cryomonai.io.atomic import atomic_write
from cryomonai.io.table import CLASS_NAME_COLUMN, COLUMNS, ParticleTable, read_particle_table

__all__ = ["CENTRED", "centred_to_voxels", "format_relion5_star", "is_relion5_particles", "read_relion5_picks",
           "read_tomograms_star", "write_relion5_star"]

#: the RELION-5 centred coordinate columns, x, y, z (Å from the tomogram's centre)
CENTRED = ("rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst")
_TOMO_NEEDS = ("rlnTomoName", "rlnTomoTiltSeriesPixelSize", "rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ")


def _read_blocks(path: Path) -> dict[str, pd.DataFrame]:
    try:
        blocks = starfile.read(path, always_dict=True, parse_as_string=["rlnTomoName", "rlnTomoReconstructedTomogram"])
    except Exception as err:  # starfile raises many kinds of errors for a malformed file
        raise CryoDataError(path, f"cannot parse the STAR file ({type(err).__name__}: {err})", "check it is a STAR file")
    return {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}


def _particles_block(blocks: dict[str, pd.DataFrame]) -> pd.DataFrame | None:
    if "particles" in blocks and set(CENTRED) <= set(blocks["particles"].columns):
        return blocks["particles"]
    return next((v for v in blocks.values() if set(CENTRED) <= set(v.columns)), None)


def is_relion5_particles(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a STAR file whose particles carry RELION-5 centred coordinates."""
    path = Path(path)
    if path.suffix.lower() != ".star" or not path.is_file():
        return False
    with open(path, encoding="utf-8", errors="replace") as fh:
        if "rlnCenteredCoordinateXAngst" not in fh.read():
            return False
    return _particles_block(_read_blocks(path)) is not None


def _resolve(value: str, star: Path) -> Path:
    """A path RELION wrote relative to its project: tried from ``star``'s folder and the two above it."""
    candidate = Path(os.path.expanduser(value))
    if candidate.is_absolute():
        return candidate
    for base in (star.parent, star.parent.parent, star.parent.parent.parent):
        if (base / candidate).exists():
            return (base / candidate).resolve()
    return (star.parent / candidate).resolve()


def read_tomograms_star(path: str | os.PathLike) -> pd.DataFrame:
    """The ``data_global`` rows of a RELION-5 ``tomograms.star``, with ``tomogram_path`` resolved (absolute).

    Raises:
        CryoDataError: missing file, block or column.
    """
    path = Path(path)
    if not path.is_file():
        raise CryoDataError(path, "tomograms STAR file not found",
                            "give --tomograms_star (RELION 5 writes it next to the particles, as tomograms.star)")
    blocks = _read_blocks(path)
    table = blocks.get("global", next(iter(blocks.values()), None))
    missing = [c for c in _TOMO_NEEDS if table is None or c not in table.columns]
    if missing:
        raise CryoDataError(path, f"block data_global lacks {missing}", "give the tomograms.star that RELION 5 wrote")
    table = table.copy()
    table["rlnTomoName"] = table["rlnTomoName"].astype(str)
    if "rlnTomoTomogramBinning" not in table:
        table["rlnTomoTomogramBinning"] = 1.0
    table["tomogram_path"] = [None if "rlnTomoReconstructedTomogram" not in table or pd.isna(v) else str(_resolve(str(v), path))
                              for v in table.get("rlnTomoReconstructedTomogram", [None] * len(table))]
    return table


def centred_to_voxels(particles: pd.DataFrame, tomograms: pd.DataFrame,
                      shapes: dict[str, tuple[int, int, int]]) -> pd.DataFrame:
    """Voxel coordinates ``x, y, z`` (from 0) of RELION-5 centred coordinates, per particle.

    Args:
        particles: rows with ``rlnTomoName`` and :data:`CENTRED`.
        tomograms: :func:`read_tomograms_star` rows.
        shapes: tomogram name → the reconstructed tomogram's shape ``(n_z, n_y, n_x)`` in voxels.
    """
    by_name = tomograms.set_index("rlnTomoName")
    names = particles["rlnTomoName"].astype(str)
    voxel = (by_name["rlnTomoTiltSeriesPixelSize"] * by_name["rlnTomoTomogramBinning"]).astype(float)
    out = {}
    for axis, column, k in (("x", CENTRED[0], 2), ("y", CENTRED[1], 1), ("z", CENTRED[2], 0)):
        size = names.map(lambda n, k=k: shapes[n][k]).astype(float)
        out[axis] = particles[column].astype(float).to_numpy() / names.map(voxel).to_numpy() + size.to_numpy() / 2
    return pd.DataFrame(out, index=particles.index)


def _tomogram_shapes(tomograms: pd.DataFrame, used: set[str], star: Path) -> dict[str, tuple[int, int, int]]:
    """The reconstructed tomograms' shapes (z, y, x), checked against ``rlnTomoSizeX/Y/Z / binning``."""
    shapes = {}
    for row in tomograms[tomograms["rlnTomoName"].isin(used)].itertuples():
        where = f"{star}, tomogram {row.rlnTomoName}"
        if not row.tomogram_path:
            raise CryoDataError(where, "has no rlnTomoReconstructedTomogram", "reconstruct the tomogram in RELION first")
        if not Path(row.tomogram_path).is_file():
            raise CryoDataError(where, f"tomogram file not found: {row.tomogram_path}",
                                "run from the RELION project folder, or fix rlnTomoReconstructedTomogram")
        shape = read_mrc_header(row.tomogram_path).shape  # (z, y, x)
        expected = np.array([row.rlnTomoSizeZ, row.rlnTomoSizeY, row.rlnTomoSizeX], float) / float(row.rlnTomoTomogramBinning)
        if np.abs(np.array(shape, float) - expected).max() > 1.0:
            raise CryoDataError(where, f"{row.tomogram_path} is {'x'.join(map(str, shape[::-1]))} voxels (x×y×z), "
                                f"but tomograms.star describes {'x'.join(f'{v:g}' for v in expected[::-1])} at binning "
                                f"{row.rlnTomoTomogramBinning:g}", "point rlnTomoReconstructedTomogram at that tomogram")
        shapes[row.rlnTomoName] = tuple(int(v) for v in shape)
    return shapes


def read_relion5_picks(path: str | os.PathLike, tomograms_star: str | os.PathLike | None = None) -> ParticleTable:
    """A RELION-5 particles STAR file as cryomonai's picks table (see the module docstring).

    Args:
        path: the particles STAR file (``rlnTomoName`` + :data:`CENTRED`).
        tomograms_star: its ``tomograms.star`` (default: ``tomograms.star`` next to ``path``).

    Returns:
        a coordinate table: ``tomogram`` (absolute path of the reconstructed tomogram), ``x, y, z``
        in its voxels, the class from ``rlnClassNumber`` when present, and every input column.

    Raises:
        CryoDataError: one line naming the file (and row) and the fix.
    """
    path = Path(path)
    blocks = _read_blocks(path)
    particles = _particles_block(blocks)
    if particles is None or len(particles) == 0:
        raise CryoDataError(path, f"no particle loop with {list(CENTRED)}", "give a RELION-5 particles STAR file")
    if "rlnTomoName" not in particles:
        raise CryoDataError(path, "the particles have no rlnTomoName", "give the RELION-5 particles STAR file")
    star = Path(tomograms_star) if tomograms_star is not None else path.parent / "tomograms.star"
    tomograms = read_tomograms_star(star)
    names = particles["rlnTomoName"].astype(str)
    unknown = ~names.isin(set(tomograms["rlnTomoName"]))
    if unknown.any():
        row = int(np.argmax(unknown.to_numpy())) + 1
        raise CryoDataError(f"{path}, row {row}", f"tomogram {names.iloc[row - 1]!r} is not in {star}",
                            "give the tomograms.star of this particle set (--tomograms_star)")
    for column in CENTRED:
        values = pd.to_numeric(particles[column], errors="coerce")
        if values.isna().any():
            row = int(np.argmax(values.isna().to_numpy())) + 1
            raise CryoDataError(f"{path}, row {row}", f"{column} is not a number", "fix the coordinate")
    shapes = _tomogram_shapes(tomograms, set(names), star)
    voxels = centred_to_voxels(particles, tomograms, shapes)
    paths = dict(zip(tomograms["rlnTomoName"], tomograms["tomogram_path"]))
    loop = particles.drop(columns=[c for c in ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ",
                                               "rlnMicrographName", "rlnImageName") if c in particles])
    loop = loop.assign(rlnMicrographName=names.map(paths).to_numpy(), rlnCoordinateX=voxels["x"].to_numpy(),
                       rlnCoordinateY=voxels["y"].to_numpy(), rlnCoordinateZ=voxels["z"].to_numpy())
    with tempfile.TemporaryDirectory() as tmp:  # read through the one particle-table reader (classes, checks)
        copy = Path(tmp) / "picks.star"
        out = {"particles": loop}
        if "classes" in blocks:
            out = {"classes": blocks["classes"], **out}
        starfile.write(out, copy)
        table = read_particle_table(copy, check_files=False)
    return ParticleTable(table.df, table.class_names, path)


def write_relion5_star(table: ParticleTable, path: str | os.PathLike) -> Path:
    """Write a table read by :func:`read_relion5_picks` (plus any added columns) back as RELION 5 has it.

    The particle loop holds every column of the input (``rlnTomoName``, the centred Å coordinates,
    angles …) and the added ones (predictions), ``rlnClassNumber`` from the table's classes (with a
    ``data_classes`` block naming them) and ``cryoSplit`` if set; no voxel coordinates and no
    tomogram paths. The input file's other blocks (``data_general``, ``data_optics``) are copied.
    """
    path = Path(path)
    text = format_relion5_star(table)
    with atomic_write(path, "w", newline="", size=len(text.encode())) as fh:
        fh.write(text)
    return path


def format_relion5_star(table: ParticleTable) -> str:
    """The text :func:`write_relion5_star` writes, without writing it."""
    df = table.df
    out = pd.DataFrame({c: df[c].to_numpy() for c in df.columns if c not in COLUMNS}, index=range(len(df)))
    if table.class_names or (df["label_index"] >= 0).any():
        out["rlnClassNumber"] = df["label_index"].to_numpy() + 1  # 0 = unlabelled
    if df["split"].notna().any():
        out["cryoSplit"] = df["split"].to_numpy()
    blocks: dict[str, pd.DataFrame | dict] = {}
    if table.source is not None and Path(table.source).is_file():
        for name, block in starfile.read(table.source, always_dict=True).items():
            if name not in ("particles", "classes") and not (isinstance(block, pd.DataFrame) and set(CENTRED) <= set(block)):
                blocks[name] = block
    blocks["particles"] = out
    if table.class_names:
        blocks["classes"] = pd.DataFrame({"rlnClassNumber": np.arange(1, len(table.class_names) + 1),
                                          CLASS_NAME_COLUMN: list(table.class_names)})
    return starfile.to_string(blocks)
