"""One self-contained HTML page of interactive figures: ``report.html``.

Why Plotly (``plotly`` on PyPI): it writes a figure as a standalone HTML fragment
(:meth:`plotly.graph_objects.Figure.to_html`) whose JavaScript library, ``plotly.js``, can be
inlined *once* per page (:func:`plotly.offline.get_plotlyjs`). The page then needs no network, no
server and no X display: copy it off the cluster and open it in any browser. Zoom, pan, hover and
legend toggling come with every figure; Plotly's JavaScript API (``Plotly.restyle``, ``plotly_hover``
events) covers the little interactivity it has no widget for (a probability filter, a hover
thumbnail). Its ``Image`` trace takes an inline PNG (the tomogram slices, drawn under the picks'
markers) at a fraction of a heatmap's size. Bokeh would do as well; Altair's standalone HTML loads
Vega from a CDN unless more packages are installed. matplotlib's PNGs stay the static figures
(:mod:`cryomonai.visualize`).

* :func:`figure_html` — a Plotly figure as a ``<div>`` (no library);
* :func:`png_data_uri` — a 2D image (a slice) as an inline ``data:image/png;base64,…`` URI;
* :func:`file_data_uri` — a PNG file as such a URI (the grid report's figures);
* :func:`html_page` — the page: head with ``plotly.js`` inlined once, a title, sections, a script;
* :func:`write_html` — atomically (:func:`~cryomonai.io.atomic.atomic_write`).

Example:
    >>> import plotly.graph_objects as go
    >>> page = html_page("demo", [("A figure", figure_html(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), "fig-a"))])
    >>> page.count("<script") > 1, 'id="fig-a"' in page
    (True, True)
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from plotly.graph_objects import Figure
from plotly.offline import get_plotlyjs

from cryomonai.io.atomic import atomic_write

__all__ = ["figure_html", "file_data_uri", "html_page", "png_data_uri", "write_html"]

#: Plotly's per-figure settings: no logo, PNG export of the view kept
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 1.5em 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ddd; margin-top: 1.6em; }
nav a { margin-right: 1em; } .note { color: #666; font-style: italic; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { border: 1px solid #ccc; padding: 2px 6px; }
.gallery { display: flex; flex-wrap: wrap; gap: 6px; margin: 4px 0 12px; }
.gallery figure { margin: 0; text-align: center; font-size: 0.7em; }
.gallery img, #hover-img { image-rendering: pixelated; width: 72px; height: 72px; border: 1px solid #999; }
.controls { position: sticky; top: 0; background: #fff; padding: 6px 0; z-index: 10; border-bottom: 1px solid #eee; }
#hover-box { position: fixed; right: 12px; bottom: 12px; background: #fff; border: 1px solid #ccc; padding: 4px;
             font-size: 0.75em; text-align: center; display: none; z-index: 20; }
#hover-box img { width: 128px; height: 128px; }
img.figure { max-width: 100%; }
"""


def figure_html(fig: Figure, div_id: str) -> str:
    """``fig`` as an HTML ``<div id=div_id>`` and the script that draws it (``plotly.js`` not included:
    :func:`html_page` inlines it once)."""
    return fig.to_html(include_plotlyjs=False, full_html=False, div_id=div_id, config=PLOTLY_CONFIG)


def png_data_uri(image: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)) -> str:
    """A 2D image (H, W) as an 8-bit grey PNG ``data:`` URI (~1.4 KB for a noisy 32² slice); float
    images are scaled between their ``percentiles``, uint8 ones shown as they are (row 0 at the top)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = image.astype(np.float32)
        lo, hi = (float(v) for v in np.percentile(image, percentiles))
        image = np.round(np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def file_data_uri(path: str | os.PathLike, mime: str = "image/png") -> str:
    """The bytes of ``path`` as a ``data:`` URI (a PNG figure embedded in the page)."""
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def html_page(title: str, sections: Sequence[tuple[str, str]], script: str = "", header: str = "") -> str:
    """The whole page: ``plotly.js`` inlined once in the head, a navigation bar, then one
    ``<section>`` per (heading, HTML body) of ``sections``, then ``script`` (JavaScript, run after
    the figures are drawn). ``header`` is HTML put under the title (e.g. sticky controls)."""
    anchors = [f"s{i}" for i in range(len(sections))]
    nav = " ".join(f'<a href="#{a}">{html.escape(h)}</a>' for a, (h, _) in zip(anchors, sections))
    body = "\n".join(f'<section id="{a}"><h2>{html.escape(h)}</h2>\n{b}\n</section>'
                     for a, (h, b) in zip(anchors, sections))
    tail = f"<script>\n{script}\n</script>" if script else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<style>{_STYLE}</style>\n'
            f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head><body>\n'
            f"<h1>{html.escape(title)}</h1>\n{header}\n<nav>{nav}</nav>\n{body}\n{tail}\n</body></html>\n")


def write_html(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (folder created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
