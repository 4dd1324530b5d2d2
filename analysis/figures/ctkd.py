"""CTKD's learned global temperature over training (a Table 5 arm; docs/method.md §3.1).

    df = ctkd_frame(run); fig = ctkd_figure(df)

Frame columns: step, ctkd_tau (the τ the step used), ctkd_lambda (the gradient-reversal strength
λ of that step, cosine 1 → 0). Runs without CTKD give an empty frame.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.runs import Run
from analysis.style import GROUP_COLORS, LABELS, apply_style, empty_figure

CTKD_COLUMNS = ["step", "ctkd_tau", "ctkd_lambda"]


def has_ctkd(run: Run) -> bool:
    """Whether the run logged a CTKD temperature."""
    return "ctkd_tau" in run.metrics.columns and bool(run.metrics["ctkd_tau"].notna().any())


def ctkd_frame(run: Run) -> pd.DataFrame:
    """Per logged step with a CTKD temperature: step, ctkd_tau, ctkd_lambda."""
    if not has_ctkd(run):
        return pd.DataFrame(columns=CTKD_COLUMNS)
    frame = run.metrics.reindex(columns=CTKD_COLUMNS)
    return frame.dropna(subset=["ctkd_tau"]).reset_index(drop=True)


def ctkd_figure(df: pd.DataFrame, title: str | None = None) -> go.Figure:
    """τ (left axis) and λ (right axis, dotted) against the step."""
    if df.empty:
        return empty_figure("No CTKD temperature logged (the run does not use ctkd).", title)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(
        go.Scatter(
            x=df["step"],
            y=df["ctkd_tau"],
            mode="lines",
            name="τ (learned)",
            line={"color": GROUP_COLORS["hard"], "width": 2},
        ),
        secondary_y=False,
    )
    fig.add_trace(
        go.Scatter(
            x=df["step"],
            y=df["ctkd_lambda"],
            mode="lines",
            name="λ (GRL strength)",
            line={"color": "#888888", "width": 1.5, "dash": "dot"},
        ),
        secondary_y=True,
    )
    fig.update_xaxes(title_text=LABELS["step"])
    fig.update_yaxes(title_text=LABELS["ctkd_tau"], secondary_y=False)
    fig.update_yaxes(title_text=LABELS["ctkd_lambda"], range=[0, 1.05], secondary_y=True, showgrid=False)
    return apply_style(fig, title, secondary_y=True)
