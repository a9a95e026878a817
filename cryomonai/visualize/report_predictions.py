"""``report.html`` of a classifier's predictions on a particle table: one file, no server.

The bundle's ``inference`` run writes it next to ``predictions.star``
(:func:`write_inference_report`, after the evaluator: the writer itself sits in
:mod:`cryomonai.engines`, below this layer). Its sections (page assembly: :mod:`cryomonai.visualize.html`):

* **Tomograms** — central xy, xz and yz slices of each tomogram (up to ``max_tomograms``; the mean
  of a :data:`SLAB`-voxel slab, for contrast; the coarsest level of an OME-Zarr image with at least
  :data:`SLICE_PIXELS` voxels along its longest side) with every pick projected onto them as a
  ring coloured by its predicted class (skipped, with a note, for predictions on extracted subtomograms);
* **Probability** — histograms of the predicted class's probability, per class;
* **Galleries** — per class, the central xy slices of its most and least confident particles;
* **Embedding** — t-SNE or PCA of the encoder features (:func:`~cryomonai.evaluation.embedding.embedding_2d`).

A slider at the top (``id="min-prob"``) hides the picks and embedding points below a probability
(starting at the writer's ``min_probability``) and shows the count left (``id="n-shown"``);
hovering a point shows the particle's index, class and probability, and its central slice in a box
at the bottom right (up to ``max_thumbnails`` particles). Plotly has no widget that filters points
by a value, so ~40 lines of JavaScript (:data:`_SCRIPT`) call ``Plotly.restyle`` and fill the hover box.
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from cryomonai.engines.predictions import ParticlePredictionsWriter
from cryomonai.errors import CryoError
from cryomonai.evaluation.embedding import embedding_2d
from cryomonai.io.predictions import INPUT_CLASS, MAX_PROBABILITY
from cryomonai.io.table import ParticleTable
from cryomonai.io.tomogram import open_tomogram, tomogram_levels
from cryomonai.visualize.html import figure_html, html_page, png_data_uri, write_html

logger = logging.getLogger(__name__)

__all__ = ["write_inference_report", "write_predictions_report"]

#: the longest side of a tomogram slice in the page, in pixels (slices are strided down to it)
SLICE_PIXELS = 400
#: the thickness (voxels of the level shown) of the central slabs averaged into the tomogram's slices
SLAB = 9
#: above this many particles the markers are drawn with WebGL (``Scattergl``), not as SVG elements
SVG_POINTS = 5000
#: the trace ``meta`` that marks the points the probability filter shows or hides
FILTERED = "prob-filter"

_SCRIPT = """
const PROBS = %(probs)s, THUMBS = %(thumbs)s;
function cryoFilter() {
  const t = parseFloat(document.getElementById('min-prob').value);
  document.getElementById('min-prob-value').textContent = t.toFixed(2);
  document.getElementById('n-shown').textContent = PROBS.filter(p => p >= t).length;
  document.querySelectorAll('.plotly-graph-div').forEach(gd => {
    if (!gd.data) return;
    gd._cryoAll = gd._cryoAll || gd.data.map(tr => tr.meta === '%(meta)s' ?
      {x: Array.from(tr.x), y: Array.from(tr.y), cd: tr.customdata} : null);
    const upd = {x: [], y: [], customdata: []}, idx = [];
    gd._cryoAll.forEach((all, i) => {
      if (!all) return;
      const keep = all.cd.map((c, k) => c[0] >= t ? k : -1).filter(k => k >= 0);
      upd.x.push(keep.map(k => all.x[k])); upd.y.push(keep.map(k => all.y[k]));
      upd.customdata.push(keep.map(k => all.cd[k])); idx.push(i);
    });
    if (idx.length) Plotly.restyle(gd, upd, idx);
  });
}
function cryoHover(ev) {
  const p = ev.points[0], cd = p.customdata, box = document.getElementById('hover-box');
  if (!cd || !THUMBS[cd[1]]) return;
  document.getElementById('hover-img').src = THUMBS[cd[1]];
  document.getElementById('hover-text').textContent = p.data.name + ' #' + cd[1] + ', p = ' + cd[0].toFixed(2);
  box.style.display = 'block';
}
window.addEventListener('load', () => {
  document.getElementById('min-prob').addEventListener('input', cryoFilter);
  document.querySelectorAll('.plotly-graph-div').forEach(gd => gd.on && gd.on('plotly_hover', cryoHover));
  cryoFilter();
});
"""


def _colours(n: int) -> list[str]:
    """``n`` distinct colours (Plotly's 10, or Alphabet's 26 for more classes; cycled beyond)."""
    palette = qualitative.Plotly if n <= 10 else qualitative.Alphabet
    return [palette[i % len(palette)] for i in range(n)]


def _points(df: pd.DataFrame, u: str, v: str, classes: Sequence[str], legend: bool) -> list[go.Scatter]:
    """One filterable marker trace per predicted class at columns (``u``, ``v``) of ``df``.

    ``customdata`` per point is (probability, particle row); the filter and the hover box read it.
    """
    traces, scatter = [], go.Scattergl if len(df) > SVG_POINTS else go.Scatter
    for name, colour in zip(classes, _colours(len(classes))):
        sel = df[df["label"] == name]
        extra = "" if INPUT_CLASS not in sel else "<br>input class %{text}"
        traces.append(scatter(
            x=sel[u].astype(float).tolist(), y=sel[v].astype(float).tolist(), mode="markers", name=name,
            legendgroup=name, showlegend=legend, meta=FILTERED,
            customdata=np.c_[sel[MAX_PROBABILITY].to_numpy(float), sel.index.to_numpy()].tolist(),
            text=sel[INPUT_CLASS].astype(str).tolist() if INPUT_CLASS in sel else None,
            marker={"color": colour, "size": 9, "symbol": "circle-open", "line": {"width": 2}},
            hovertemplate=f"{html.escape(name)}<br>particle %{{customdata[1]}}<br>p = %{{customdata[0]:.2f}}"
                          f"{extra}<extra></extra>",
        ))
    return traces


def _central_planes(path: str) -> tuple[list[np.ndarray], float, tuple[int, int, int], int]:
    """The mean of each central slab (:data:`SLAB` voxels thick) across z, y and x of a tomogram, strided
    to ≤ :data:`SLICE_PIXELS`; the pixel size in voxels of the finest level (the picks' unit), the
    finest level's shape (z, y, x) and the slab's half thickness in those voxels."""
    levels = tomogram_levels(path)  # finest first
    level = next((lv for lv in reversed(levels) if max(lv.shape) >= SLICE_PIXELS), levels[0])
    t = open_tomogram(path, level.level)
    (nz, ny, nx), h = level.shape, SLAB // 2
    step = max(1, -(-max(level.shape) // SLICE_PIXELS))
    planes = [np.asarray(t[max(nz // 2 - h, 0):nz // 2 + h + 1, ::step, ::step], np.float32).mean(0),
              np.asarray(t[::step, max(ny // 2 - h, 0):ny // 2 + h + 1, ::step], np.float32).mean(1),
              np.asarray(t[::step, ::step, max(nx // 2 - h, 0):nx // 2 + h + 1], np.float32).mean(2)]
    scale = levels[0].shape[2] / nx  # finest voxels per voxel of this level
    return planes, step * scale, levels[0].shape, round(h * scale)


def _tomogram_figure(path: str, picks: pd.DataFrame, classes: Sequence[str]) -> go.Figure:
    """xy / xz / yz central slices of the tomogram at ``path`` with ``picks`` (x, y, z voxels) as rings."""
    planes, pixel, (nz, ny, nx), h = _central_planes(path)
    titles = (f"xy (z = {nz // 2} ± {h})", f"xz (y = {ny // 2} ± {h})", f"yz (x = {nx // 2} ± {h})")
    fig = make_subplots(1, 3, subplot_titles=titles, column_widths=[nx, nx, ny], horizontal_spacing=0.04)
    for col, (plane, (u, v)) in enumerate(zip(planes, (("x", "y"), ("x", "z"), ("y", "z"))), start=1):
        fig.add_trace(go.Image(source=png_data_uri(plane), x0=0, dx=pixel, y0=0, dy=pixel, hoverinfo="skip"), 1, col)
        for trace in _points(picks, u, v, classes, legend=col == 1):
            fig.add_trace(trace, 1, col)
        fig.update_xaxes(title_text=u, row=1, col=col)
        fig.update_yaxes(title_text=v, row=1, col=col)
    fig.update_layout(height=max(360, int(900 * max(ny, nz) / max(2 * nx + ny, 1)) + 120),
                      margin={"l": 40, "r": 10, "t": 40, "b": 40}, legend={"itemsizing": "constant"})
    return fig


def _tomograms_section(df: pd.DataFrame, classes: Sequence[str], max_tomograms: int) -> str:
    """HTML: one slices figure per tomogram, or a note why there is none."""
    if "tomogram" not in df or df["tomogram"].isna().all():
        return '<p class="note">No tomogram: these are predictions on extracted subtomograms, so there are no slices.</p>'
    parts, names = [], list(dict.fromkeys(df["tomogram"].dropna()))
    for i, path in enumerate(names[:max_tomograms]):
        picks = df[df["tomogram"] == path]
        try:
            figure = figure_html(_tomogram_figure(str(path), picks, classes), f"tomogram-{i}")
        except (CryoError, OSError) as err:
            figure = f'<p class="note">{html.escape(str(err))}</p>'
        parts.append(f"<h3>{html.escape(Path(str(path)).name)}: {len(picks)} picks</h3>\n{figure}")
    if len(names) > max_tomograms:
        parts.append(f'<p class="note">{len(names) - max_tomograms} more tomograms are not shown '
                     f"(max_tomograms = {max_tomograms}).</p>")
    return "\n".join(parts)


def _histogram_figure(df: pd.DataFrame, classes: Sequence[str]) -> go.Figure:
    """Overlaid histograms of the predicted class's probability, one per class."""
    fig = go.Figure()
    for name, colour in zip(classes, _colours(len(classes))):
        p = df.loc[df["label"] == name, MAX_PROBABILITY].astype(float)
        fig.add_trace(go.Histogram(x=p.tolist(), name=f"{name} ({len(p)})", marker_color=colour, opacity=0.6,
                                   xbins={"start": 0.0, "end": 1.0001, "size": 0.05}))
    fig.update_layout(barmode="overlay", height=320, xaxis_title="probability of the predicted class",
                      yaxis_title="particles", margin={"l": 50, "r": 10, "t": 20, "b": 45})
    return fig


def _gallery_section(df: pd.DataFrame, classes: Sequence[str], slices: np.ndarray | None, size: int) -> str:
    """HTML: per class, the central slices of its ``size`` most and least confident particles."""
    if slices is None:
        return '<p class="note">No particle slices were kept (keep_slices off), so there are no galleries.</p>'
    parts = []
    for name in classes:
        block = df[df["label"] == name].sort_values(MAX_PROBABILITY, ascending=False, kind="stable")
        parts.append(f"<h3>{html.escape(name)}: {len(block)} particles</h3>")
        most, least = block.head(size), block.tail(min(size, max(len(block) - size, 0))).iloc[::-1]
        for what, rows in (("most confident", most), ("least confident", least)):
            figures = "".join(f'<figure><img src="{png_data_uri(slices[i])}" alt="particle {i}">'
                              f"<figcaption>#{i} p={p:.2f}</figcaption></figure>"
                              for i, p in zip(rows.index, rows[MAX_PROBABILITY]))
            if figures:
                parts.append(f'<div>{what}</div><div class="gallery">{figures}</div>')
    return "\n".join(parts)


def _embedding_figure(df: pd.DataFrame, coords: np.ndarray, classes: Sequence[str], title: str) -> go.Figure:
    """The 2D map of the features, one filterable trace per predicted class."""
    points = df.assign(map_x=coords[:, 0], map_y=coords[:, 1])
    fig = go.Figure(_points(points, "map_x", "map_y", classes, legend=True))
    fig.update_traces(marker={"symbol": "circle", "size": 7, "line": {"width": 0}})
    fig.update_layout(height=520, title=title, xaxis={"showticklabels": False}, yaxis={"showticklabels": False},
                      margin={"l": 20, "r": 10, "t": 40, "b": 20})
    return fig


def _summary_section(df: pd.DataFrame, classes: Sequence[str], prefix: str) -> str:
    """HTML table: per predicted class, its particles and their mean probability; links to ``<prefix>.star/.csv``."""
    rows = "".join(f"<tr><td>{html.escape(c)}</td><td>{int((df['label'] == c).sum())}</td>"
                   f"<td>{df.loc[df['label'] == c, MAX_PROBABILITY].mean():.3f}</td></tr>" for c in classes)
    return (f"<table><tr><th>predicted class</th><th>particles</th><th>mean probability</th></tr>{rows}</table>"
            f'<p>Files: <a href="{prefix}.star">{prefix}.star</a>, <a href="{prefix}.csv">{prefix}.csv</a></p>')


def _controls(n: int, min_probability: float) -> str:
    """HTML: the sticky probability slider with its value and the count of picks shown."""
    return (f'<div class="controls"><label for="min-prob">minimum probability</label> '
            f'<input type="range" id="min-prob" min="0" max="1" step="0.01" value="{min_probability:.2f}"> '
            f'<span id="min-prob-value">{min_probability:.2f}</span> — <span id="n-shown">{n}</span> of {n} '
            "particles shown</div>\n"
            '<div id="hover-box"><img id="hover-img" alt="particle slice"><div id="hover-text"></div></div>')


def write_predictions_report(
    path: str | os.PathLike,
    predictions: ParticleTable,
    features: np.ndarray | None = None,
    slices: np.ndarray | None = None,
    min_probability: float = 0.0,
    method: str = "tsne",
    seed: int = 0,
    gallery_size: int = 6,
    max_tomograms: int = 4,
    max_thumbnails: int = 2000,
    prefix: str = "predictions",
) -> Path:
    """Write ``report.html`` (see the module docstring) for a table of predictions; returns its path.

    Args:
        path: the HTML file (written atomically; folder created).
        predictions: rows with ``x, y, z`` (voxels), ``tomogram`` (absolute path or None), ``label``
            (the predicted class) and ``rlnMaxValueProbDistribution``, e.g.
            :meth:`~cryomonai.engines.predictions.ParticlePredictionsWriter.predictions_table`.
        features: (N, F) encoder features of the rows, for the embedding map (None or F = 0: none).
        slices: (N, H, W) central xy slice of each particle (gallery and hover thumbnails), or None.
        min_probability: the slider's starting value.
        method: ``tsne`` or ``pca`` (the embedding map).
        seed: the map's random seed.
        gallery_size: particles per gallery row.
        max_tomograms: tomograms with slices shown (the first ones of the table).
        max_thumbnails: the most particles whose hover thumbnails are embedded (beyond: none).
        prefix: the base name of the STAR/CSV files next to the page (linked from it).
    """
    df, classes = predictions.df.reset_index(drop=True), list(predictions.class_names)
    if slices is not None and len(slices) != len(df):
        raise ValueError(f"report: {len(slices)} slices for {len(df)} predictions (give one slice per row)")
    sections = [("Summary", _summary_section(df, classes, prefix)),
                ("Tomograms", _tomograms_section(df, classes, max_tomograms)),
                ("Probability", figure_html(_histogram_figure(df, classes), "histogram")),
                ("Galleries", _gallery_section(df, classes, slices, gallery_size))]
    if features is not None and np.ndim(features) == 2 and np.shape(features)[1] > 0 and len(df) > 1:
        coords = embedding_2d(np.asarray(features), method, seed)
        title = f"{'t-SNE' if method == 'tsne' else 'PCA'} of the encoder features, {len(df)} particles"
        sections.append(("Embedding", figure_html(_embedding_figure(df, coords, classes, title), "embedding")))
    else:
        sections.append(("Embedding", '<p class="note">No encoder features, so there is no embedding map.</p>'))
    thumbs = [png_data_uri(s) for s in slices] if slices is not None and len(df) <= max_thumbnails else []
    script = _SCRIPT % {"probs": json.dumps(df[MAX_PROBABILITY].astype(float).round(4).tolist()),
                        "thumbs": json.dumps(thumbs), "meta": FILTERED}
    page = html_page(f"Predictions: {len(df)} particles, {len(classes)} classes", sections, script,
                     header=_controls(len(df), min_probability))
    return write_html(path, page)


def write_inference_report(writer: ParticlePredictionsWriter, method: str = "tsne", seed: int = 0,
                           filename: str = "report.html", **kwargs: Any) -> Path | None:
    """``report.html`` next to ``predictions.star``, from a writer after its run (the bundle's ``inference``).

    Every prediction is in the page (the slider starts at the writer's ``min_probability``); an
    encoder's run (no ``class_names``) has no report: returns None. ``kwargs`` go to
    :func:`write_predictions_report`.
    """
    if writer.class_names is None or writer.probabilities is None:
        return None
    path = write_predictions_report(writer.output_dir / filename, writer.predictions_table(), writer.features,
                                    writer.slices, writer.min_probability, method, seed,
                                    **{"prefix": writer.prefix, **kwargs})
    logger.info("%s written", path)
    return path
