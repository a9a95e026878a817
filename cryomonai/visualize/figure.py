"""The one way a figure becomes a PNG file: atomically (temp file + rename), then closed."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["save_png"]


def save_png(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write matplotlib ``fig`` to ``path`` as PNG (parent folders created; never a torn file) and close it."""
    import matplotlib.pyplot as plt

    from cryomonai.io.atomic import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=dpi)
    plt.close(fig)
    return path
