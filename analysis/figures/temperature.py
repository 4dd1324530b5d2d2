"""Temperature and entropy: paper Fig. 4, the 3 × 2 histogram grid, from tokens.parquet.

Rows: the IDTS temperature τ, student entropy before IDTS H(softmax z_S) and after IDTS
H(softmax(z_S/τ)), in nats. Columns: an early probe step (default the first, normally step 0 =
before training) and a late one (default the last). Hard tokens in blue, easy ones in orange,
overlaid; dashed vertical lines at each group's mean.

Two views of the same probe tokens:
- ``"selected"`` (default, the paper's Fig. 4): only the tokens LATF selected at that step;
  hard = difficulty > the (lower) median of the selected tokens' difficulty, exactly the median
  IDTS uses; τ is the temperature those tokens were trained at (``tau``) and "after" is the
  entropy at that τ (``entropy_student_tau``).
- ``"all"``: every probe token, split at the median of all of them, with τ from IDTS over all
  tokens (``tau_all``, ``entropy_student_idts``, the ``hard`` column): the view before the
  selection, labelled as such wherever it is shown.

    df = histogram_frame(run); fig = histogram_grid_figure(df)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.runs import Run
from analysis.style import GROUP_COLORS, LABELS, apply_style, empty_figure

HISTOGRAM_COLUMNS = ["column", "step", "quantity", "group", "example", "token_index", "value"]
QUANTITIES = {  # view -> quantity -> tokens.parquet column
    "selected": {"tau": "tau", "entropy_before": "entropy_student", "entropy_after": "entropy_student_tau"},
    "all": {"tau": "tau_all", "entropy_before": "entropy_student", "entropy_after": "entropy_student_idts"},
}
VIEWS = {
    "selected": "selected tokens, split at their median (the paper's Fig. 4)",
    "all": "all probe tokens, split at their median (before selection)",
}
TWO_GROUPS = ("hard", "easy")
ROWS = ("tau", "entropy_before", "entropy_after")  # the grid's rows, top to bottom


def selected_hard(difficulty: pd.Series) -> pd.Series:
    """hard = s > lower median of ``difficulty`` (torch.median's convention for an even count,
    the median IDTS divides by), for one step's selected tokens."""
    values = np.sort(difficulty.to_numpy(dtype=float))
    if values.size == 0:
        return pd.Series(dtype=bool, index=difficulty.index)
    return difficulty > values[(values.size - 1) // 2]


def _view_rows(tokens: pd.DataFrame, step: int, view: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The tokens of ``step`` in ``view`` and their hard/easy labels."""
    at_step = tokens[tokens["step"] == step]
    if view == "all":
        rows = at_step[at_step["hard"].notna()]
        return rows, np.where(rows["hard"].astype(bool), "hard", "easy")
    rows = at_step[at_step["selected"].fillna(False).astype(bool)]
    return rows, np.where(selected_hard(rows["difficulty"]), "hard", "easy")


def histogram_frame(
    run: Run, early_step: int | None = None, late_step: int | None = None, view: str = "selected"
) -> pd.DataFrame:
    """Long frame of the values behind Fig. 4: one row per (column, quantity, probe token).

    column: "early" | "late"; step: the probe step of that column; quantity: "tau" |
    "entropy_before" | "entropy_after" (columns per ``view``, see the module docstring);
    group: "hard" | "easy"; value. Tokens with a missing value are left out (a run probed
    before ``entropy_student_tau`` existed has no "entropy_after" rows in the selected view).
    early_step/late_step default to the first and last probe steps;
    a step without probe rows raises ValueError listing the probe steps.
    """
    if view not in QUANTITIES:
        raise ValueError(f"view must be one of {', '.join(QUANTITIES)}, got {view!r}")
    tokens = run.tokens
    if tokens.empty:
        return pd.DataFrame(columns=HISTOGRAM_COLUMNS)
    steps = sorted(int(s) for s in tokens["step"].unique())
    early = steps[0] if early_step is None else int(early_step)
    late = steps[-1] if late_step is None else int(late_step)
    for step in (early, late):
        if step not in steps:
            raise ValueError(f"step {step} has no probe rows in {run.name}; probe steps: {', '.join(map(str, steps))}")
    parts = []
    for column, step in (("early", early), ("late", late)):
        rows, group = _view_rows(tokens, step, view)
        for quantity, source in QUANTITIES[view].items():
            part = pd.DataFrame(
                {
                    "column": column,
                    "step": step,
                    "quantity": quantity,
                    "group": group,
                    "example": rows["example"].to_numpy(),
                    "token_index": rows["token_index"].to_numpy(),
                    "value": rows[source].to_numpy(dtype=float),
                }
            )
            parts.append(part.dropna(subset=["value"]))
    return pd.concat(parts, ignore_index=True)[HISTOGRAM_COLUMNS]


def histogram_grid_figure(df: pd.DataFrame, bins: int = 30, title: str | None = None) -> go.Figure:
    """3 × 2 grid of overlaid token-count histograms (hard vs easy) with dashed group means.

    Bins and x range are shared within a row (same edges in both columns, `bins` equal bins
    over the row's range), so the two columns compare. Bars are drawn from numpy counts, so each
    trace's y sums to its token count. Traces: 12 bars named "hard"/"easy" (legend once);
    shapes: one dashed vertical line per (row, column, group) with tokens.
    """
    if df.empty:
        return empty_figure("No probe data: this run has no tokens.parquet rows.", title)
    early_step = int(df.loc[df["column"] == "early", "step"].iloc[0])
    late_step = int(df.loc[df["column"] == "late", "step"].iloc[0])
    early_name = "before training" if early_step == 0 else "early"
    fig = make_subplots(
        rows=3,
        cols=2,
        vertical_spacing=0.09,
        horizontal_spacing=0.08,
        subplot_titles=[f"{early_name} (step {early_step})", f"late (step {late_step})", "", "", "", ""],
    )
    axis_titles = [LABELS["tau"], LABELS["entropy_before"], LABELS["entropy_after"]]
    shown, mean_lines = set(), []
    for row, quantity in enumerate(ROWS, start=1):
        values = df.loc[df["quantity"] == quantity, "value"].to_numpy(dtype=float)
        if values.size == 0:
            continue
        edges = np.histogram_bin_edges(values, bins=bins)
        centers, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        for col, column in enumerate(("early", "late"), start=1):
            highest = 1
            for group in TWO_GROUPS:
                sel = df[(df["quantity"] == quantity) & (df["column"] == column) & (df["group"] == group)][
                    "value"
                ].to_numpy(dtype=float)
                if sel.size == 0:
                    continue
                counts, _ = np.histogram(sel, bins=edges)
                color = GROUP_COLORS[group]
                fig.add_trace(
                    go.Bar(
                        x=centers,
                        y=counts,
                        width=widths,
                        name=group,
                        legendgroup=group,
                        showlegend=group not in shown,
                        marker={"color": color, "line": {"width": 0}},
                        opacity=0.6,
                        customdata=np.stack([edges[:-1], edges[1:]], axis=1),
                        hovertemplate=f"{group}: %{{y}} tokens in [%{{customdata[0]:.3f}}, "
                        "%{customdata[1]:.3f}]<extra></extra>",
                    ),
                    row=row,
                    col=col,
                )
                shown.add(group)
                highest = max(highest, int(counts.max()))
                mean_lines.append(_vertical_line(float(sel.mean()), color, row, col))
            # Whole-token counts: integer ticks, about five per axis.
            fig.update_yaxes(dtick=max(1, math.ceil(highest / 5)), rangemode="tozero", row=row, col=col)
            fig.update_xaxes(title_text=axis_titles[row - 1], range=[edges[0], edges[-1]], row=row, col=col)
    fig.update_yaxes(title_text=LABELS["count"], col=1)
    # One layout update for all mean lines: add_vline per subplot costs ~40 ms each.
    fig.update_layout(barmode="overlay", bargap=0, height=900, shapes=mean_lines)
    return apply_style(fig, title)


def _vertical_line(x: float, color: str, row: int, col: int) -> dict:
    """A dashed full-height line at x in subplot (row, col) of the 3 × 2 grid."""
    index = (row - 1) * 2 + col
    suffix = "" if index == 1 else str(index)
    return {
        "type": "line",
        "x0": x,
        "x1": x,
        "xref": f"x{suffix}",
        "y0": 0,
        "y1": 1,
        "yref": f"y{suffix} domain",
        "line": {"color": color, "dash": "dash", "width": 2},
    }
