"""The particle table: cryomonai's dataset format (RELION-style STAR, or CSV).

One row per particle (subtomogram). A *coordinate table* (particle picks in a tomogram, before
subtomograms are extracted) has no path column but a tomogram and x, y, z on every row; its
``path`` is None. On disk:

**STAR** (read/written with :mod:`starfile`, RELION column names verbatim), block
``data_particles``:

=====================  ==================================================================
``rlnImageName``       subtomogram MRC path, relative to the table's folder
``rlnClassNumber``     1-based class; 0 (or empty) = unlabelled
``rlnMicrographName``  tomogram the particle comes from (``rlnTomoName`` is read too)
``rlnCoordinateX/Y/Z`` particle position in the tomogram, voxels
``rlnPixelSize``       Å per voxel (kept under this name)
``cryoSplit``          ``train``/``val``/``test`` (our column)
=====================  ==================================================================

(a pytom-match-pick particle list is such a coordinate table: :mod:`cryomonai.io.pytom`; so is WarpTools'
template matching, in fractions of the tomogram's size: :mod:`cryomonai.io.warp`)

and an optional block ``data_classes`` with ``rlnClassNumber`` and ``cryoClassName`` (our
column) naming the classes 1..K. Without it the class names are the numbers as strings
(``"1"`` .. ``str(max class)``), so ``label_index == rlnClassNumber - 1`` always holds.

**CSV**: ``path,label[,split,tomogram,x,y,z]``; ``label`` holds class *names* (integers are
names too; empty = unlabelled). Classes are ordered by the optional ``label_index`` column
(which :func:`write_particle_table` writes), else sorted (numerically if all are integers).

Any other column is kept as is, in both formats.

In memory, :class:`ParticleTable` holds a :class:`pandas.DataFrame` with the normalised columns
``path`` (absolute, or None in a coordinate table), ``label`` (class name, or None when
unlabelled), ``label_index`` (0-based, -1 when unlabelled), ``split``, ``tomogram``, ``x``,
``y``, ``z``, then the extra columns; and ``class_names``, the one place where class names and
indices are tied together.

Errors are one-line :class:`~cryomonai.errors.CryoDataError`\\ s naming the table and the 1-based
particle row.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io.atomic import atomic_write
from cryomonai.io.pytom import is_pytom_loop, read_pytom_loop
from cryomonai.io.warp import is_warp_matching_loop, read_warp_loop

__all__ = ["SPLITS", "ParticleTable", "format_particle_table", "read_particle_table", "write_particle_table"]

#: allowed values of the ``split`` column
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: normalised columns, in this order, followed by any extra columns
COLUMNS: tuple[str, ...] = ("path", "label", "label_index", "split", "tomogram", "x", "y", "z")
#: STAR column → normalised column (``rlnClassNumber`` is handled separately)
STAR_TO_COLUMN: dict[str, str] = {
    "rlnImageName": "path",
    "rlnMicrographName": "tomogram",
    "rlnCoordinateX": "x",
    "rlnCoordinateY": "y",
    "rlnCoordinateZ": "z",
    "cryoSplit": "split",
}
CLASS_NAME_COLUMN = "cryoClassName"
_STRING_COLUMNS = ["rlnImageName", "rlnMicrographName", "rlnTomoName", "cryoSplit", CLASS_NAME_COLUMN]
_EXPECTED_STAR = (
    "rlnImageName (or rlnMicrographName + rlnCoordinateX/Y/Z for a coordinate table), rlnClassNumber, "
    "rlnPixelSize, cryoSplit"
)
_EXPECTED_CSV = "path (or tomogram + x, y, z for a coordinate table), label, split"
_COORDINATES = ("tomogram", "x", "y", "z")


@dataclass
class ParticleTable:
    """A particle table in memory (see the module docstring for the columns).

    Attributes:
        df: one row per particle, normalised columns first.
        class_names: class names; ``class_names[i]`` is the class of ``label_index == i``.
        source: the file it was read from, if any.
    """

    df: pd.DataFrame
    class_names: list[str]
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.df)

    def index_of(self, name: str) -> int:
        """0-based index of class ``name`` (:class:`CryoDataError` if unknown)."""
        try:
            return self.class_names.index(str(name))
        except ValueError:
            raise CryoDataError(self._where, f"unknown class {name!r}", f"use one of {self.class_names}")

    def name_of(self, index: int) -> str:
        """Class name of 0-based ``index`` (:class:`CryoDataError` if out of range)."""
        if not 0 <= int(index) < len(self.class_names):
            raise CryoDataError(self._where, f"no class with index {index}", f"use 0..{len(self.class_names) - 1}")
        return self.class_names[int(index)]

    def subset(self, rows: np.ndarray | Sequence[bool] | pd.Series) -> ParticleTable:
        """The rows selected by a boolean mask, with the same classes and source."""
        df = self.df[np.asarray(rows, dtype=bool)].reset_index(drop=True)
        return ParticleTable(df, list(self.class_names), self.source)

    @property
    def _where(self) -> str:
        return str(self.source) if self.source is not None else "particle table"


def read_particle_table(
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    check_files: bool = True,
    allow_duplicates: bool = False,
    require_labels: bool = False,
) -> ParticleTable:
    """Read a particle table (``.star`` or ``.csv``).

    Args:
        path: the table file.
        class_names: impose these classes (e.g. fine-tuning a model trained on them): each
            label must be one of them and ``label_index`` follows their order.
        check_files: check that every subtomogram file exists.
        allow_duplicates: allow the same file on several rows.
        require_labels: every row must have a class.

    Raises:
        CryoDataError: missing, unreadable or empty table; a missing required column; a
            missing file (the first one, and how many); an unknown class; a duplicate file;
            a bad split value.
    """
    path = Path(path)
    if not path.is_file():
        raise CryoDataError(path, "particle table not found", "check the path (a .star or .csv file)")
    suffix = path.suffix.lower()
    if suffix == ".star":
        df, file_names = _read_star(path)
    elif suffix == ".csv":
        df, file_names = _read_csv(path)
    else:
        raise CryoDataError(path, f"unknown table format {path.suffix!r}", "use a .star or .csv particle table")
    if len(df) == 0:
        raise CryoDataError(path, "the particle table has no rows", "add one row per subtomogram")
    names = _check_names(path, class_names) if class_names is not None else file_names
    df = _normalise(df, names, path, require_labels)
    _check_paths(df, path, check_files, allow_duplicates)
    return ParticleTable(df, names, path)


def write_particle_table(
    table_or_df: ParticleTable | pd.DataFrame, path: str | os.PathLike, class_names: Sequence[str] | None = None
) -> Path:
    """Write a particle table atomically: STAR if ``path`` ends in ``.star``, CSV if ``.csv``.

    Paths are written relative to the output file's folder (relative paths in a DataFrame are
    taken as already relative to it). :func:`read_particle_table` reads back the same rows,
    classes (in the same order) and extra columns.

    Args:
        table_or_df: a :class:`ParticleTable`, or a DataFrame with at least ``path`` (and
            ``label`` class names for a labelled table).
        path: the output file.
        class_names: the classes, in index order. Default: the table's; for a DataFrame, the
            ``label`` names ordered by ``label_index`` if present, else sorted.

    Raises:
        ConfigError: for an unknown suffix.
        CryoDataError: a label not in ``class_names``.
    """
    path = Path(path)
    text = format_particle_table(table_or_df, path, class_names)
    with atomic_write(path, "w", newline="", size=len(text.encode())) as f:
        f.write(text)
    return path


def format_particle_table(
    table_or_df: ParticleTable | pd.DataFrame, path: str | os.PathLike, class_names: Sequence[str] | None = None
) -> str:
    """The text :func:`write_particle_table` writes to ``path`` (STAR or CSV by its suffix), without writing.

    Paths are made relative to ``path``'s folder, as in :func:`write_particle_table`; the
    arguments and errors are the same.
    """
    path = Path(path)
    if isinstance(table_or_df, ParticleTable):
        df, names = table_or_df.df, class_names if class_names is not None else table_or_df.class_names
    else:
        df = table_or_df
        names = class_names
        if names is None:
            names = _names_from_labels(path, _labels_of(df), df.get("label_index"))
    names = _check_names(path, names)
    df = _normalise(df, names, path, require_labels=False)
    folder = path.resolve().parent
    rel = None if df["path"].isna().all() else [_relative(p, folder) for p in df["path"]]
    if path.suffix.lower() == ".star":
        text = starfile.to_string(_star_blocks(df, rel, names))
    elif path.suffix.lower() == ".csv":
        text = _csv_frame(df, rel, names).to_csv(index=False)
    else:
        raise ConfigError(path, f"unknown table format {path.suffix!r}", "write to a .star or .csv file")
    return text


# ----------------------------------------------------------------------------- reading


def _check_star_quotes(path: Path) -> None:
    """Reject a value with a quote *inside* it (``"say "hi""``, ``"Hsp90's"``): STAR readers split such
    values differently, and :mod:`starfile` would silently misread it. An apostrophe inside an
    unquoted value (``John's``) is fine."""
    try:
        lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except OSError:
        return  # the parser reports it
    for number, line in enumerate(lines, start=1):
        if line.lstrip().startswith(("#", "_", "data_", "loop_")):
            continue
        for token in line.split():
            inner = token[1:-1]
            if '"' in inner or (token[0] in "'\"" and "'" in inner):
                raise CryoDataError(f"{path}, line {number}",
                                    f"value {token!r} has a quote inside it (STAR readers split such values differently)",
                                    "rename it without quote characters, or use a CSV table")


def _read_star(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """STAR → (DataFrame with ``path``, ``label`` names and other columns, class names)."""
    _check_star_quotes(path)
    try:
        blocks = starfile.read(path, always_dict=True, parse_as_string=_STRING_COLUMNS)
    except Exception as err:  # starfile raises many kinds of errors for a malformed file
        problem = f"cannot parse the STAR file ({type(err).__name__}: {err})"
        raise CryoDataError(path, problem, "check it is a STAR file")
    loops = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    main = loops.get("particles")
    if main is None:
        main = next((v for k, v in loops.items() if k != "classes" and "rlnImageName" in v), None)
    if main is None:
        main = next((v for k, v in loops.items() if k not in ("classes", "optics")), pd.DataFrame())
    if len(main) == 0:
        raise CryoDataError(path, "the particle table has no rows", "add one row per subtomogram")
    if is_pytom_loop(main):  # pytom-match-pick: tomograms named by file stem (and early versions' ptm columns)
        main = read_pytom_loop(main, path)
    elif is_warp_matching_loop(main):  # WarpTools template matching: fractions of the tomogram's size
        main = read_warp_loop(main, path)
    df = main.rename(columns=STAR_TO_COLUMN)
    if "tomogram" not in df and "rlnTomoName" in df:
        df = df.rename(columns={"rlnTomoName": "tomogram"})
    if "path" not in df and not set(_COORDINATES) <= set(df.columns):
        partial = [c for c in _COORDINATES if c not in df.columns] if {"x", "y", "z"} & set(df.columns) else []
        star = {v: k for k, v in STAR_TO_COLUMN.items()}
        missing = ", ".join(star[c] for c in partial) if partial else "rlnImageName"
        problem = f"missing column {missing}; found {list(main.columns)}"
        raise CryoDataError(path, problem, f"expected {_EXPECTED_STAR}")
    numbers = df.pop("rlnClassNumber") if "rlnClassNumber" in df else pd.Series(np.nan, index=df.index)
    names = _star_class_names(path, loops.get("classes"), numbers)
    df["label"] = [_star_label(path, row, n, names) for row, n in enumerate(numbers, start=1)]
    return df, names


def _star_class_names(path: Path, classes: pd.DataFrame | None, numbers: pd.Series) -> list[str]:
    """Class names from the ``data_classes`` block, else ``"1"`` .. ``str(max class number)``."""
    if classes is None:
        top = pd.to_numeric(numbers, errors="coerce").max()
        return [str(i) for i in range(1, int(top) + 1)] if pd.notna(top) and top >= 1 else []
    if not {"rlnClassNumber", CLASS_NAME_COLUMN} <= set(classes.columns):
        raise CryoDataError(path, "block data_classes lacks rlnClassNumber or cryoClassName", "give both columns")
    ordered = classes.sort_values("rlnClassNumber")
    if list(ordered["rlnClassNumber"]) != list(range(1, len(ordered) + 1)):
        raise CryoDataError(path, "data_classes must number the classes 1..K without gaps", "renumber the classes")
    return [str(name) for name in ordered[CLASS_NAME_COLUMN]]


def _star_label(path: Path, row: int, number: object, names: list[str]) -> str | None:
    """The class name of ``rlnClassNumber`` ``number`` (None for empty/0 = unlabelled)."""
    try:
        value = float(number)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = float("inf")  # not a number: reported below
    if np.isnan(value) or value <= 0:
        return None
    if value != int(min(value, 2**62)) or value > len(names):
        raise CryoDataError(
            f"{path}, row {row}", f"rlnClassNumber {number} is not a class 1..{len(names)}",
            "fix the class number, or add the class to the data_classes block",
        )
    return names[int(value) - 1]


def _read_csv(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """CSV → (DataFrame with ``path``, ``label`` names and other columns, class names)."""
    text_columns = {c: str for c in ("path", "label", "split", "tomogram")}
    try:  # only empty cells are missing: a class may well be called "NA"
        df = pd.read_csv(path, dtype=text_columns, keep_default_na=False, na_values=[""], skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise CryoDataError(path, "the particle table is empty", f"write a header line ({_EXPECTED_CSV}) and rows")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise CryoDataError(path, f"cannot parse the CSV file ({err})", f"expected columns {_EXPECTED_CSV}")
    df.columns = [str(c).strip() for c in df.columns]
    if "path" not in df and not set(_COORDINATES) <= set(df.columns):
        partial = [c for c in _COORDINATES if c not in df.columns] if {"x", "y", "z"} & set(df.columns) else []
        missing = ", ".join(repr(c) for c in partial) if partial else "'path'"
        problem = f"missing column {missing}; found {list(df.columns)}"
        raise CryoDataError(path, problem, f"expected columns {_EXPECTED_CSV}")
    labels = _labels_of(df)
    df["label"] = labels
    return df, _names_from_labels(path, labels, df.pop("label_index") if "label_index" in df else None)


def _labels_of(df: pd.DataFrame) -> list[str | None]:
    """The ``label`` column as class-name strings, None where empty/unlabelled."""
    if "label" not in df:
        return [None] * len(df)
    return [None if pd.isna(v) or str(v).strip() == "" else str(v).strip() for v in df["label"]]


def _names_from_labels(path: Path, labels: list[str | None], index: pd.Series | None) -> list[str]:
    """Class names: ordered by a consistent ``label_index`` column if given, else sorted."""
    present = {lab for lab in labels if lab is not None}
    if index is None or not present:
        return sorted(present, key=lambda s: (0, int(s), s) if re.fullmatch(r"[+-]?\d+", s) else (1, 0, s))
    by_index: dict[int, str] = {}
    for row, (lab, idx) in enumerate(zip(labels, index), start=1):
        if lab is None:
            continue
        if pd.isna(idx) or by_index.setdefault(int(idx), lab) != lab or int(idx) < 0:
            raise CryoDataError(f"{path}, row {row}", f"label_index {idx} disagrees with label {lab!r} on other rows",
                                "fix label_index, or delete the column to order classes by name")
    if len(set(by_index.values())) != len(by_index) or sorted(by_index) != list(range(len(by_index))):
        raise CryoDataError(path, "label_index must number each class once, 0..K-1 without gaps",
                            "delete the label_index column, or pass class_names explicitly")
    return [by_index[i] for i in range(len(by_index))]


def _check_names(path: Path, names: Sequence[str]) -> list[str]:
    """Class names as a list of unique strings."""
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise CryoDataError(path, f"class names repeat: {names}", "give each class one unique name")
    return names


def _normalise(df: pd.DataFrame, names: list[str], path: Path, require_labels: bool) -> pd.DataFrame:
    """Return a copy with the normalised columns first (``label_index`` recomputed from ``names``)."""
    df = df.reset_index(drop=True).copy()
    labels = _labels_of(df)
    lookup = {name: i for i, name in enumerate(names)}
    unknown = [row for row, lab in enumerate(labels, start=1) if lab is not None and lab not in lookup]
    if unknown:
        shown = names if len(names) <= 10 else [*names[:10], "..."]
        raise CryoDataError(
            f"{path}, row {unknown[0]}", f"class {labels[unknown[0] - 1]!r} is not one of the classes {shown} "
            f"({len(unknown)} of {len(labels)} rows)", "remove those rows or use class names that match the model",
        )
    if require_labels and None in labels:
        row = labels.index(None) + 1
        raise CryoDataError(f"{path}, row {row}", f"has no class ({labels.count(None)} unlabelled rows)",
                            "give every particle a label")
    df["label"] = pd.Series(labels, dtype=object)
    df["label_index"] = np.array([lookup[lab] if lab is not None else -1 for lab in labels], dtype=np.int64)
    df["split"] = _splits_of(df, path)
    for column in ("tomogram",):
        values = df[column] if column in df else pd.Series([None] * len(df))
        df[column] = pd.Series([None if pd.isna(v) else str(v) for v in values], dtype=object)
    for column in ("x", "y", "z"):
        try:
            df[column] = pd.to_numeric(df[column], errors="raise") if column in df else np.nan
        except (ValueError, TypeError):
            raise CryoDataError(path, f"column {column} holds non-numeric values", "give coordinates in voxels")
    df["path"] = _paths_of(df, path)
    return df[list(COLUMNS) + [c for c in df.columns if c not in COLUMNS]]


def _splits_of(df: pd.DataFrame, path: Path) -> pd.Series:
    """The ``split`` column lower-cased, None where empty; error for a value not in :data:`SPLITS`."""
    if "split" not in df:
        return pd.Series([None] * len(df), dtype=object)
    values = [None if pd.isna(v) or str(v).strip() == "" else str(v).strip().lower() for v in df["split"]]
    for row, value in enumerate(values, start=1):
        if value is not None and value not in SPLITS:
            raise CryoDataError(f"{path}, row {row}", f"split {value!r} is not one of {list(SPLITS)}", "fix the split")
    return pd.Series(values, dtype=object)


def _paths_of(df: pd.DataFrame, table: Path) -> pd.Series:
    """Absolute subtomogram paths; all None for a coordinate table (which needs x, y, z, tomogram)."""
    if "path" in df and df["path"].notna().any():
        return pd.Series([_absolute(p, table, row) for row, p in enumerate(df["path"], start=1)], dtype=object)
    incomplete = df[list(_COORDINATES)].isna().any(axis=1).to_numpy()
    if incomplete.any():
        row = int(np.argmax(incomplete)) + 1
        raise CryoDataError(f"{table}, row {row}", "a table without paths needs tomogram, x, y and z on every row",
                            "fill them in, or give the subtomogram paths")
    return pd.Series([None] * len(df), dtype=object)


def _absolute(value: object, table: Path, row: int) -> str:
    """An absolute path; a relative one is taken relative to the table's folder."""
    if pd.isna(value) or str(value).strip() == "":  # type: ignore[call-overload]
        raise CryoDataError(f"{table}, row {row}", "has no subtomogram path", "fill in the path column")
    text = os.path.expanduser(str(value).strip())
    return os.path.normpath(text if os.path.isabs(text) else os.path.join(table.resolve().parent, text))


def _check_paths(df: pd.DataFrame, path: Path, check_files: bool, allow_duplicates: bool) -> None:
    """Duplicate files (unless allowed) and, if ``check_files``, missing files → one error."""
    if df["path"].isna().all():  # a coordinate table: no subtomogram files yet
        return
    if not allow_duplicates:
        dup = df["path"].duplicated(keep="first")
        if dup.any():
            row = int(np.argmax(dup.to_numpy()))
            first = int(np.argmax((df["path"] == df["path"][row]).to_numpy()))
            raise CryoDataError(
                f"{path}, row {row + 1}", f"{df['path'][row]} is listed twice (first at row {first + 1}; "
                f"{int(dup.sum())} duplicate rows)", "remove the duplicates, or pass allow_duplicates=True",
            )
    if check_files:
        missing = [row for row, p in enumerate(df["path"], start=1) if not os.path.isfile(p)]
        if missing:
            raise CryoDataError(
                f"{path}, row {missing[0]}", f"file not found: {df['path'][missing[0] - 1]} "
                f"({len(missing)} of {len(df)} files missing)",
                "paths are relative to the table's folder; fix them or extract the missing subtomograms",
            )


# ----------------------------------------------------------------------------- writing


def _relative(value: str, folder: Path) -> str:
    """``value`` relative to ``folder`` (absolute if that is impossible, e.g. another drive)."""
    try:
        return os.path.relpath(value, folder)
    except ValueError:
        return value


def _extra_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c not in COLUMNS]


def _star_blocks(df: pd.DataFrame, rel: list[str] | None, names: list[str]) -> dict[str, pd.DataFrame]:
    """The ``particles`` (and ``classes``) loop blocks of a STAR file (no paths: a coordinate table)."""
    out = pd.DataFrame({"rlnImageName": rel} if rel is not None else {}, index=range(len(df)))
    if names or (df["label_index"] >= 0).any():
        out["rlnClassNumber"] = df["label_index"].to_numpy() + 1  # 0 = unlabelled
    column_to_star = {v: k for k, v in STAR_TO_COLUMN.items() if v != "path"}
    for column in ("tomogram", "x", "y", "z", "split"):
        if df[column].notna().any():
            out[column_to_star[column]] = df[column].to_numpy()
    for column in _extra_columns(df):
        out[column_to_star.get(column, column)] = df[column].to_numpy()
    blocks = {"particles": out}
    if names:
        blocks["classes"] = pd.DataFrame({"rlnClassNumber": np.arange(1, len(names) + 1), CLASS_NAME_COLUMN: names})
    return blocks


def _csv_frame(df: pd.DataFrame, rel: list[str] | None, names: list[str]) -> pd.DataFrame:
    """The CSV columns: ``path,label,label_index`` then the other non-empty columns."""
    out = pd.DataFrame({"path": rel} if rel is not None else {}, index=range(len(df)))
    if names:
        out["label"] = df["label"].to_numpy()
        out["label_index"] = df["label_index"].where(df["label_index"] >= 0).astype("Int64")  # empty = none
    for column in ("split", "tomogram", "x", "y", "z"):
        if df[column].notna().any():
            out[column] = df[column].to_numpy()
    for column in _extra_columns(df):
        out[column] = df[column].to_numpy()
    return out
