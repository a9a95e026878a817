"""Stratified train/val/test splits and nested labelled-fraction subsets.

The paper (Gupta et al. 2022) fine-tunes with 25 %, 50 %, 75 % and 100 % of the labels; to make
those runs comparable the subsets are **nested** (the 25 % subset is inside the 50 % one, and so
on, for the same seed) and stratified (each class keeps its share).

Both functions draw, for each class, a permutation from a generator seeded by ``(seed, class)``,
so the result for one class does not change when another class is added or removed. Labels may
be class names or 0-based indices; ``None``, NaN, ``""`` and negative integers mean
*unlabelled*.

Example:
    >>> labels = ["a"] * 5 + ["b"] * 5
    >>> split = stratified_split(labels, (0.6, 0.2, 0.2), seed=0)
    >>> [(c, int(((split == "train") & (np.array(labels) == c)).sum())) for c in "ab"]
    [('a', 3), ('b', 3)]
    >>> quarter, half = label_subset(labels, 0.25, seed=0), label_subset(labels, 0.5, seed=0)
    >>> int(quarter.sum()), int(half.sum()), bool((half | ~quarter).all())
    (4, 6, True)
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np

from cryomonai.errors import ConfigError, CryoDataError

__all__ = ["label_subset", "stratified_split"]

_UNLABELLED = "\0unlabelled"


def _class_keys(labels: Sequence | np.ndarray) -> list[str]:
    """One string key per item; every kind of 'unlabelled' maps to the same key."""
    keys = []
    for value in np.asarray(labels, dtype=object).ravel():
        if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
            keys.append(_UNLABELLED)
        elif isinstance(value, (int, np.integer)) and value < 0:
            keys.append(_UNLABELLED)
        else:
            keys.append(str(value))
    return keys


def _permutation(key: str, seed: int, salt: str, n: int) -> np.ndarray:
    """A permutation of ``range(n)`` that depends only on (``seed``, ``salt``, class ``key``)."""
    rng = np.random.default_rng([int(seed), zlib.crc32(f"{salt}:{key}".encode())])
    return rng.permutation(n)


def _groups(keys: list[str]) -> dict[str, np.ndarray]:
    """Class key → item indices (ascending), classes in sorted order."""
    array = np.asarray(keys, dtype=object)
    return {key: np.flatnonzero(array == key) for key in sorted(set(keys))}


def _split_counts(n: int, fractions: np.ndarray) -> np.ndarray:
    """Split ``n`` items by ``fractions`` (summing to 1) with the largest-remainder rule."""
    exact = n * fractions
    counts = np.floor(exact + 1e-9).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def stratified_split(
    labels: Sequence | np.ndarray, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0
) -> np.ndarray:
    """Assign each item to ``"train"``, ``"val"`` or ``"test"``, class by class.

    Each class (unlabelled items form one more group) is shuffled with its own seeded
    permutation and cut by ``fractions`` with the largest-remainder rule, so every class has
    the same proportions up to one item, and ties favour train, then val.

    Args:
        labels: (N,) class names or indices.
        fractions: (train, val, test) fractions, each >= 0, summing to 1.
        seed: random seed; the same seed gives the same split.

    Returns:
        (N,) array of ``"train"``/``"val"``/``"test"``.

    Raises:
        ConfigError: for fractions that are not three non-negative numbers summing to 1.
    """
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
        raise ConfigError("split fractions", f"got {list(fractions)}", "give (train, val, test) summing to 1")
    keys = _class_keys(labels)
    out = np.empty(len(keys), dtype="<U5")
    for key, items in _groups(keys).items():
        order = items[_permutation(key, seed, "split", len(items))]
        n_train, n_val, _ = _split_counts(len(items), fr)
        out[order[:n_train]] = "train"
        out[order[n_train : n_train + n_val]] = "val"
        out[order[n_train + n_val :]] = "test"
    return out


def label_subset(
    labels: Sequence | np.ndarray, fraction: float, seed: int = 0, classes: Sequence | None = None
) -> np.ndarray:
    """Choose a stratified ``fraction`` of the (training) items whose labels are used.

    Per class, a seeded permutation is drawn and its first ``ceil(fraction * n_class)`` items
    are taken; the permutation does not depend on ``fraction``, so for one seed the subsets are
    nested: ``label_subset(l, 0.25) ⊂ label_subset(l, 0.5) ⊂ ... ⊂ label_subset(l, 1.0)``.
    Unlabelled items are never chosen.

    Args:
        labels: (N,) class names or indices of the training items.
        fraction: in (0, 1].
        seed: random seed.
        classes: classes that must each keep at least one example (e.g. the model's classes).

    Returns:
        (N,) boolean mask of the chosen items.

    Raises:
        CryoDataError: for a fraction outside (0, 1], or a class of ``classes`` left without
            examples.
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ConfigError("label fraction", f"got {fraction}", "give a fraction in (0, 1], e.g. 0.25")
    keys = _class_keys(labels)
    mask = np.zeros(len(keys), dtype=bool)
    for key, items in _groups(keys).items():
        if key == _UNLABELLED:
            continue
        take = math.ceil(float(fraction) * len(items) - 1e-9)
        mask[items[_permutation(key, seed, "subset", len(items))[:take]]] = True
    chosen = {k for k, m in zip(keys, mask) if m}
    empty = [c for c in _class_keys(classes or []) if c != _UNLABELLED and c not in chosen]
    if empty:
        raise CryoDataError(
            "label subset", f"class {empty[0]!r} would have 0 labelled examples ({len(empty)} classes like this)",
            "add labelled particles of that class to the training split, or raise the label fraction",
        )
    return mask
