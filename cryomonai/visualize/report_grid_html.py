"""``report.html`` of a finished grid: its tables, figures, an interactive accuracy curve and the cells.

:func:`~cryomonai.experiment.report_grid.write_grid_report` writes it next to ``table.md``, into the
grid's folder. One self-contained file (:mod:`cryomonai.visualize.html`):

* **Tables** — ``table.md`` rendered by Python-Markdown (its ``tables`` extension);
* **Accuracy vs labels** — mean ± std (over repeats) of the metric per method against the
  labelled fraction, one panel per dataset (Plotly; numbers from
  :func:`~cryomonai.evaluation.stats.summarise`);
* **Figures** — the report's PNGs, embedded (base64);
* **Cells** — every row of ``results.csv`` with a relative link to its run folder (``cells/…``).
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path

import markdown
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from cryomonai.evaluation.stats import order_datasets, read_results, summarise
from cryomonai.visualize.html import figure_html, file_data_uri, html_page, write_html

__all__ = ["write_grid_html"]

#: the columns of results.csv listed per cell (those present): the recipe, the validation numbers the grid
#: chose on, the one test read, the readouts, the deployed classifier and the context control
CELL_COLUMNS = ("dataset", "method", "label_fraction", "repeat", "recipe", "n_labelled", "best_val_accuracy",
                "val_linear_probe_accuracy", "test_accuracy", "linear_probe_accuracy", "knn_accuracy", "deployed",
                "deployed_test_accuracy", "context_accuracy", "finetune_seconds")


def accuracy_figure(results: pd.DataFrame, metric: str = "test_accuracy") -> go.Figure:
    """Mean ± std of ``metric`` against the labelled fraction (log x), a line per method, a panel per dataset."""
    summary, datasets = summarise(results, metric), order_datasets(results)
    fig = make_subplots(1, len(datasets), subplot_titles=datasets, shared_yaxes=True)
    methods = list(dict.fromkeys(summary["method"]))
    for col, dataset in enumerate(datasets, start=1):
        for method, colour in zip(methods, qualitative.Plotly * (1 + len(methods) // 10)):
            block = summary[(summary["dataset"] == dataset) & (summary["method"] == method)]
            if block.empty:
                continue
            fig.add_trace(go.Scatter(
                x=(100 * block["label_fraction"]).tolist(), y=block["mean"].tolist(), name=method,
                legendgroup=method, showlegend=col == 1, mode="lines+markers", line={"color": colour},
                error_y={"type": "data", "array": block["std"].fillna(0).tolist(), "visible": True},
                customdata=block["n"].tolist(),
                hovertemplate=f"{html.escape(method)}<br>%{{x:g}} % labelled<br>{metric} %{{y:.3f}} "
                              "± %{error_y.array:.3f} (n = %{customdata})<extra></extra>",
            ), 1, col)
        ticks = sorted(set(100 * summary.loc[summary["dataset"] == dataset, "label_fraction"]))
        fig.update_xaxes(type="log", title_text="labelled fraction (%)", tickvals=ticks, row=1, col=col)
    fig.update_yaxes(title_text=f"{metric} (mean ± std)", row=1, col=1)
    fig.update_layout(height=420, margin={"l": 60, "r": 10, "t": 40, "b": 50})
    return fig


def _cells_table(results: pd.DataFrame) -> str:
    """HTML table: one row per cell of ``results.csv``, linked to its run folder when it has one."""
    columns = [c for c in CELL_COLUMNS if c in results]
    head = "".join(f"<th>{c}</th>" for c in columns) + "<th>run folder</th>"
    rows = []
    for _, r in results.iterrows():
        cells = "".join(f"<td>{r[c]:.4g}</td>" if isinstance(r[c], float) else f"<td>{html.escape(str(r[c]))}</td>"
                        for c in columns)
        run = str(r.get("run_dir", "") or "")
        link = f'<a class="cell" href="{html.escape(run)}/">{html.escape(run)}</a>' if run and run != "nan" else ""
        rows.append(f"<tr>{cells}<td>{link}</td></tr>")
    return f'<table id="cells"><tr>{head}</tr>\n' + "\n".join(rows) + "</table>"


def write_grid_html(out_dir: str | os.PathLike, results_csv: str | os.PathLike,
                    figures: Mapping[str, str | os.PathLike] | None = None, metric: str = "test_accuracy",
                    title: str = "") -> Path:
    """Write ``<out_dir>/report.html`` from ``<out_dir>/table.md``, ``results_csv`` and the PNG ``figures``
    (caption → file; missing files are left out). Run folders in ``results.csv`` (``run_dir``) are
    linked relative to ``out_dir``, as the grid writes them. Returns the page."""
    out = Path(out_dir)
    results = read_results(results_csv, metric)
    table_md = out / "table.md"
    tables = (markdown.markdown(table_md.read_text(encoding="utf-8"), extensions=["tables"]) if table_md.is_file()
              else '<p class="note">No table.md.</p>')
    images = "\n".join(f'<figure><img class="figure" src="{file_data_uri(p)}" alt="{html.escape(c)}">'
                       f"<figcaption>{html.escape(c)} (<code>{html.escape(Path(p).name)}</code>)</figcaption></figure>"
                       for c, p in (figures or {}).items() if Path(p).is_file())
    sections = [("Tables", tables),
                ("Accuracy vs labels", figure_html(accuracy_figure(results, metric), "accuracy-curve")),
                ("Figures", images or '<p class="note">No figures.</p>'),
                (f"Cells ({len(results)})", _cells_table(results))]
    return write_html(out / "report.html", html_page(title or f"Grid report: {out.name}", sections))
