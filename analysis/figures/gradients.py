"""Gradient groups: paper Fig. 1 bottom, from gradients.parquet.

Gradients are w.r.t. the student logits (docs/method.md §5): per probe step and token group,
cos(g_d(group), g_s(group)) with the group's SFT gradient, cos(g_d(group), g_full) with the
full-batch divergence gradient, and the norm share ‖g_d(group)‖ / Σ‖g_d‖ in percent.

    df = gradient_frame(run, split="paper")
    gradient_cosine_figure(df); gradient_share_figure(df)
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.runs import Run
from analysis.style import GROUP_COLORS, GROUP_ORDER, LABELS, apply_style, empty_figure

GRADIENT_FRAME_COLUMNS = [
    "step",
    "split",
    "ratio",
    "group",
    "n_tokens",
    "cos_sft",
    "cos_total",
    "norm_share",
    "grad_norm",
]
SPLITS = ("paper", "current")


def gradient_frame(run: Run, split: str = "paper") -> pd.DataFrame:
    """The gradients.parquet rows of one split, sorted by step and group (hard, mid, easy).

    split="paper": groups at r = 0.5 (25/25/50), comparable across runs;
    split="current": groups at the run's r at that step. Columns GRADIENT_FRAME_COLUMNS.
    """
    if split not in SPLITS:
        raise ValueError(f'split must be "paper" or "current", not {split!r}')
    rows = run.gradients[run.gradients["split"] == split]
    order = {g: i for i, g in enumerate(GROUP_ORDER)}
    rows = rows.assign(_order=rows["group"].map(order)).sort_values(["step", "_order"])
    return rows[GRADIENT_FRAME_COLUMNS].reset_index(drop=True)


def gradient_cosine_figure(df: pd.DataFrame, title: str | None = None) -> go.Figure:
    """cos(group divergence gradient, group SFT gradient) over steps; one trace per group
    (named "hard", "mid", "easy"), y in [−1, 1] with a dashed zero line (below = conflict)."""
    if df.empty:
        return empty_figure("No gradient probes: this run has no gradients.parquet rows.", title)
    fig = go.Figure()
    for group in GROUP_ORDER:
        rows = df[df["group"] == group]
        if rows.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=rows["step"],
                y=rows["cos_sft"],
                mode="lines+markers",
                name=group,
                line={"color": GROUP_COLORS[group], "width": 2.5},
                customdata=rows["n_tokens"],
                hovertemplate=f"{group}: cos %{{y:.3f}} (%{{customdata}} tokens)<extra></extra>",
            )
        )
    fig.add_hline(y=0.0, line_dash="dash", line_color="#444444", line_width=1)
    fig.update_xaxes(title_text=LABELS["step"])
    fig.update_yaxes(title_text=LABELS["cos_sft"], range=[-1.05, 1.05])
    return apply_style(fig, title)


def gradient_share_figure(df: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Two panels over steps: norm share per group (%; the groups sum to 100) and cos with
    the total gradient per group. Six traces: each group's name once per panel
    (the second panel's traces share the legend entry)."""
    if df.empty:
        return empty_figure("No gradient probes: this run has no gradients.parquet rows.", title)
    fig = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=("gradient-norm share", "cos with total gradient")
    )
    for group in GROUP_ORDER:
        rows = df[df["group"] == group]
        if rows.empty:
            continue
        line = {"color": GROUP_COLORS[group], "width": 2.5}
        fig.add_trace(
            go.Scatter(
                x=rows["step"],
                y=rows["norm_share"],
                mode="lines+markers",
                name=group,
                legendgroup=group,
                line=line,
                hovertemplate=f"{group}: %{{y:.1f}} %<extra></extra>",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=rows["step"],
                y=rows["cos_total"],
                mode="lines+markers",
                name=group,
                legendgroup=group,
                line=line,
                showlegend=False,
                hovertemplate=f"{group}: cos %{{y:.3f}}<extra></extra>",
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text=LABELS["step"])
    fig.update_yaxes(title_text=LABELS["norm_share"], range=[0, 100], row=1, col=1)
    fig.update_yaxes(title_text=LABELS["cos_total"], range=[-0.05, 1.05], row=1, col=2)
    return apply_style(fig, title)
