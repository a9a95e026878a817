"""The one way a figure becomes a PNG file: atomically (temp file + rename).

Figures here are plain :class:`matplotlib.figure.Figure` objects, never pyplot's: drawing needs no
GUI backend, does not change the user's (``matplotlib.use``) and leaves no figure open in pyplot.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from cryomonai.io.atomic import atomic_write

__all__ = ["save_png"]


def save_png(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write matplotlib ``fig`` to ``path`` as PNG (parent folders created; never a torn file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=dpi)
    return path
