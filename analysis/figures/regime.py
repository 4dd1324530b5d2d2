"""Student-generated data (GKD / DistiLLM regimes, issue 10): what each step trained on.

The regime fields of metrics.jsonl (docs/contracts.md) over training, for runs whose
`regime` is not ground truth:

    df = regime_frame(run); fig = regime_figure(df)

Three stacked panels over the step axis: the probability of student data (GKD's λ_on or
DistiLLM's φ) with the running shares of steps that trained on fresh samples and on any
student data; the replay-buffer size; the mean generated response length.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from adakd.config import RunConfig
from analysis.runs import Run
from analysis.style import GROUP_COLORS, LABELS, apply_style, empty_figure

REGIME_FIELDS = ["on_policy", "data_source", "buffer_size", "student_data_prob", "gen_length"]
REGIME_COLUMNS = [
    "step",
    "data_source",
    "on_policy",
    "student_data",
    "on_policy_share",
    "student_data_share",
    "buffer_size",
    "student_data_prob",
    "gen_length",
]
SOURCE_COLORS = {
    "student": GROUP_COLORS["hard"],
    "buffer": GROUP_COLORS["easy"],
    "mixed": "#2ca02c",
    "ground_truth": GROUP_COLORS["mid"],
}


def has_regime_fields(run: Run) -> bool:
    """Whether the run's metrics carry the regime fields (a gkd / distillm run)."""
    return bool(
        not run.metrics.empty and "data_source" in run.metrics.columns and run.metrics["data_source"].notna().any()
    )


def regime_frame(run: Run) -> pd.DataFrame:
    """One row per logged step of a student-data run; empty (REGIME_COLUMNS) otherwise.

    Columns: step; data_source ("student" | "buffer" | "ground_truth" | "mixed"); on_policy
    (bool: fresh student samples this step); student_data (bool: any student data, i.e.
    data_source != "ground_truth"); on_policy_share / student_data_share: the running share
    of logged steps up to and including this one with on_policy / student_data
    (cumsum / count); buffer_size; student_data_prob (λ_on or φ); gen_length (mean sampled
    response length in tokens, NaN on ground-truth steps). Steps logged without the fields
    (none in a regime run) are dropped.
    """
    if not has_regime_fields(run):
        return pd.DataFrame(columns=REGIME_COLUMNS)
    metrics = run.metrics
    rows = metrics[metrics["data_source"].notna()].sort_values("step", kind="stable")
    df = pd.DataFrame(
        {"step": rows["step"].astype(int).to_numpy(), "data_source": rows["data_source"].astype(str).to_numpy()}
    )
    df["on_policy"] = _column(rows, "on_policy").fillna(0).astype(bool).to_numpy()
    df["student_data"] = df["data_source"] != "ground_truth"
    count = np.arange(1, len(df) + 1)
    df["on_policy_share"] = df["on_policy"].cumsum().to_numpy() / count
    df["student_data_share"] = df["student_data"].cumsum().to_numpy() / count
    for name in ("buffer_size", "student_data_prob", "gen_length"):
        df[name] = _column(rows, name).to_numpy()
    return df[REGIME_COLUMNS].reset_index(drop=True)


def student_data_note(df: pd.DataFrame, config: dict) -> str | None:
    """Why a regime run's panel is flat, or None when some step trained on student data.

    df: :func:`regime_frame`; config: the run's config. DistiLLM's φ starts at 0 and rises by
    δ (``distillm_prob_step``) only when the validation cross-entropy comes back ε
    (``distillm_threshold``) above its reference (the loss at step 0 or at the last rise); a
    student that keeps improving never triggers it, so every step trains on ground truth. GKD's
    λ_on is fixed, so all-ground-truth steps there mean λ_on is 0 or the coin never came up."""
    if df.empty or bool(df["student_data"].any()):
        return None
    steps = len(df)
    config = {**RunConfig().to_dict(), **config}  # a config written before a field existed: its default
    regime = config["regime"]
    if regime == "distillm":
        phi = float(np.nanmax(df["student_data_prob"].to_numpy(dtype=float), initial=0.0))
        return (
            f"No step trained on student data: all {steps} logged steps used the ground-truth replies, so "
            f"this run was plain KD on the data (with its divergence). DistiLLM's φ (max {phi:g} here) rises by "
            f"δ = {config['distillm_prob_step']} only when the validation cross-entropy comes back "
            f"ε = {config['distillm_threshold']} nat above its reference (the loss at step 0 or at the "
            "last rise); a student that is still improving never does that, so φ stayed at 0. Longer runs, "
            "or runs from a student that has stopped improving, see φ move."
        )
    return (
        f"No step trained on student data: all {steps} logged steps used the ground-truth replies "
        f"(λ_on = {config['gkd_lambda']}: each step trains on student samples with that probability)."
    )


def regime_figure(df: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Three rows sharing the step axis.

    Row 1 (probability, 0–1): "student-data probability" (λ_on / φ, step line),
    "share on-policy" and "share student data" (running shares). Row 2: "buffer size".
    Row 3: "generated length" markers coloured by data_source (ground-truth steps have none).
    """
    if df.empty:
        return empty_figure("No regime fields: this run trains on the dataset's responses only.", title)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.45, 0.25, 0.30])
    fig.add_trace(
        go.Scatter(
            x=df["step"],
            y=df["student_data_prob"],
            mode="lines",
            name="student-data probability",
            line={"color": "#333333", "width": 2, "shape": "hv"},
            hovertemplate="step %{x}: λ/φ = %{y:.2f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=df["step"],
            y=df["on_policy_share"],
            mode="lines",
            name="share on-policy",
            line={"color": SOURCE_COLORS["student"], "width": 2},
            hovertemplate="step %{x}: %{y:.0%} of steps on fresh samples<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=df["step"],
            y=df["student_data_share"],
            mode="lines",
            name="share student data",
            line={"color": SOURCE_COLORS["buffer"], "width": 2, "dash": "dot"},
            hovertemplate="step %{x}: %{y:.0%} of steps on student data<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=df["step"],
            y=df["buffer_size"],
            mode="lines",
            name="buffer size",
            line={"color": SOURCE_COLORS["buffer"], "width": 2, "shape": "hv"},
            hovertemplate="step %{x}: %{y:.0f} samples<extra></extra>",
        ),
        row=2,
        col=1,
    )
    sampled = df[df["gen_length"].notna()]
    fig.add_trace(
        go.Scatter(
            x=sampled["step"],
            y=sampled["gen_length"],
            mode="markers",
            name="generated length",
            marker={"color": [SOURCE_COLORS.get(s, "#333333") for s in sampled["data_source"]], "size": 7},
            customdata=sampled["data_source"],
            hovertemplate="step %{x}: %{y:.1f} tokens (%{customdata})<extra></extra>",
        ),
        row=3,
        col=1,
    )
    fig.update_yaxes(title_text="probability / share", range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(title_text="buffer (samples)", rangemode="tozero", row=2, col=1)
    fig.update_yaxes(title_text="gen. length (tokens)", rangemode="tozero", row=3, col=1)
    fig.update_xaxes(title_text=LABELS["step"], row=3, col=1)
    fig.update_layout(height=560)
    return apply_style(fig, title)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    if name == "on_policy":
        return frame[name].map(lambda v: bool(v) if isinstance(v, (bool, np.bool_)) else np.nan)
    return pd.to_numeric(frame[name], errors="coerce").astype(float)
