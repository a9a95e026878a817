"""A resumed grid keeps the preset it started with.

A grid resumes by skipping the runs and cells it has done (:mod:`~cryomonai.experiment.grid`). Had the
preset changed in between, say a learning rate, a dataset's SNR or a recipe, the grid would mix runs of
two protocols in one ``results.csv`` and then write the new preset to ``preset.json`` as if it had run
all of them. :func:`check_resume` refuses that, in one line naming the key.

What may change on resume: who trains the runs and how many at once (``executor``, ``workers``), the
report's figures (``report``), the preset's name, and cells added or left out (``methods``,
``label_fractions``, ``repeats``, datasets added). Everything a finished run depends on may not: a
dataset's parameters, the encoder, the seed, the pretraining and fine-tuning overrides, the recipe space
and how a recipe is chosen, and whether each cell gets its frozen-feature readouts (``readouts``: the
report's probe checks read them from every row).

The preset is not all a run depends on: the bundle's own config files set every default it does not
override, and cryomonai's own code trains and evaluates them. :func:`check_bundle` and :func:`check_code`
record a digest of each config file and each module (``bundle_configs.json``, ``code.json``, at the grid's
first start) and, on a resume where one has changed (a cryomonai upgrade or a local edit mid-grid), warn
naming the files: not an error, since most changes alter no protocol (a fix to a log line, a new reader),
but not silent either.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cryomonai.errors import ConfigError
from cryomonai.experiment.preset import GridPreset
from cryomonai.io.atomic import atomic_write

__all__ = ["RESUMABLE", "bundle_digests", "check_bundle", "check_code", "check_resume", "code_digests", "first_difference"]

log = logging.getLogger(__name__)

#: preset keys a resumed grid may change (nothing that a finished run depends on)
RESUMABLE = frozenset({"name", "methods", "label_fractions", "repeats", "report", "executor", "workers"})


def first_difference(old: Any, new: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first key path (``"finetune.lr"``) where two JSON values differ, with both values; None if equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in old or key not in new:
                return sub, old.get(key, "(absent)"), new.get(key, "(absent)")
            found = first_difference(old[key], new[key], sub)
            if found:
                return found
        return None
    return None if old == new else (path, old, new)


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[:width - 1] + "…"


def check_resume(saved: str | Path, preset: GridPreset) -> None:
    """Raise a one-line :class:`~cryomonai.errors.ConfigError` if the grid whose ``preset.json`` is
    ``saved`` ran with a preset that differs from ``preset`` in a key a finished run depends on.

    A folder without ``preset.json`` is a new grid. Keys the saved preset lacks (written by an older
    version, before the key existed) are not compared. Datasets are matched by name: one added is new
    cells, one whose parameters changed is a conflict.
    """
    saved = Path(saved)
    if not saved.is_file():
        return
    try:
        old = json.loads(saved.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(str(saved), f"unreadable ({err})", "restore it, or give the grid a new --out") from None
    new = json.loads(json.dumps(asdict(preset), default=str))
    for key, value in new.items():
        if key in RESUMABLE or key not in old:
            continue
        if key == "datasets":
            before = {d.get("name"): d for d in old[key]}
            diff = next((d for d in (first_difference(before[ds["name"]], ds, f"datasets[{ds['name']}]")
                                     for ds in value if ds["name"] in before) if d), None)
        else:
            diff = first_difference(old[key], value, key)
        if diff:
            where, was, now = diff
            raise ConfigError(f"{saved}, key '{where}'",
                              f"the grid ran with {_short(was)}, the preset now says {_short(now)}",
                              "restore the preset (the grid's is in its preset.json), or give the grid a new --out")


def bundle_digests(bundle: str | Path) -> dict[str, str]:
    """A digest of each config file of ``bundle`` a grid's runs read (``configs/**/*.json`` but the grid
    presets and ``metadata.json``), by its path under ``configs/``."""
    configs = Path(bundle) / "configs"
    return {p.relative_to(configs).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted(configs.rglob("*.json"))
            if p.relative_to(configs).parts[0] != "grid" and p.name != "metadata.json"}


def code_digests() -> dict[str, str]:
    """A digest of each module of the installed cryomonai package, by its path (``cryomonai/experiment/grid.py``)."""
    package = Path(__file__).resolve().parents[1]
    return {p.relative_to(package.parent).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted(package.rglob("*.py"))}


def _check_record(record: Path, now: dict[str, str], what: str) -> list[str]:
    """Write ``now`` to ``record`` if it does not exist; else warn, once, naming the keys that differ."""
    if not record.is_file():
        record.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(record, "w") as fh:
            json.dump(now, fh, indent=1)
        return []
    try:
        before = json.loads(record.read_text())
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    except (OSError, ValueError, AttributeError) as err:
        log.warning("%s: unreadable (%s); the %s is not compared (delete it to start a new record)", record, err, what)
        return []
    if changed:
        shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
        log.warning("%s: the %s changed since this grid started (%s): runs trained before and after may differ; "
                    "to keep one protocol, finish the grid with the cryomonai version that started it, or run this "
                    "one into a new --out", record.parent, what, shown)
    return changed


def check_bundle(record: str | Path, bundle: str | Path) -> list[str]:
    """Record ``bundle``'s config digests in ``record`` if it does not exist (a grid's first start); else
    warn, once, naming the config files that changed since. Returns them (sorted)."""
    return _check_record(Path(record), bundle_digests(bundle), "bundle's config files")


def check_code(record: str | Path) -> list[str]:
    """:func:`check_bundle` for cryomonai's modules (:func:`code_digests`): the modules changed since the
    grid started, sorted; a warning names them."""
    return _check_record(Path(record), code_digests(), "cryomonai code")
