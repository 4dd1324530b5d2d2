"""Token dynamics: paper Fig. 1 top (difficulty per token and per group over training) and
Fig. 3a (distillation loss with the LATF ratio r on a second axis).

Each figure is a pair: `*_frame(run) -> DataFrame` (tidy, documented columns; read from
tokens.parquet / metrics.jsonl) and `*_figure(df) -> go.Figure`.

    df = difficulty_heatmap_frame(run, example=0); fig = difficulty_heatmap_figure(df)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.figures.interruptions import interruptions, mark_interruptions
from analysis.figures.smoothing import ema
from analysis.runs import Run
from analysis.style import (
    DIFFICULTY_SCALE,
    GROUP_COLORS,
    GROUP_ORDER,
    LABELS,
    apply_style,
    empty_figure,
    hex_to_rgba,
    token_label,
)

HEATMAP_COLUMNS = [
    "step",
    "example",
    "token_index",
    "token_text",
    "token_label",
    "difficulty",
    "group",
    "selected",
    "hard",
]
GROUP_DIFFICULTY_COLUMNS = ["step", "group", "n", "median", "p10", "p25", "p75", "p90"]
LOSS_RATIO_COLUMNS = ["step", "loss", "kd", "ce", "ratio", "next_ratio", "mean_tau"]
PERCENTILES = {"p10": 10, "p25": 25, "median": 50, "p75": 75, "p90": 90}


# ---------------------------------------------------------------- Fig. 1 top: heat map


def difficulty_heatmap_frame(run: Run, example: int = 0) -> pd.DataFrame:
    """Difficulty of every response token of probe example `example` at every probe step.

    Columns HEATMAP_COLUMNS, one row per (token, step), sorted by token_index then step.
    token_label = "index: text" with whitespace made visible (unique per token).
    Raises ValueError when the run has probe rows but not for that example.
    """
    tokens = run.tokens
    if tokens.empty:
        return pd.DataFrame(columns=HEATMAP_COLUMNS)
    rows = tokens[tokens["example"] == example]
    if rows.empty:
        examples = sorted(int(e) for e in tokens["example"].unique())
        raise ValueError(
            f"example {example} is not in the probe set of {run.name} (examples: {', '.join(map(str, examples))})"
        )
    rows = rows.sort_values(["token_index", "step"], kind="stable").copy()
    # The probe set is fixed, so a token's text is the same at every step; take the first.
    text = rows.groupby("token_index")["token_text"].first()
    rows["token_text"] = rows["token_index"].map(text)
    rows["token_label"] = [token_label(i, t) for i, t in zip(rows["token_index"], rows["token_text"], strict=True)]
    return rows[HEATMAP_COLUMNS].reset_index(drop=True)


GROUP_MARKS = {"hard": "H", "mid": "M", "easy": ""}  # the letters of mark_groups


def difficulty_heatmap_figure(df: pd.DataFrame, title: str | None = None, mark_groups: bool = False) -> go.Figure:
    """Heat map: y = token (index: text, first token at the top), x = probe step, colour = s.
    mark_groups: each cell also shows its LATF group at that step as a letter (GROUP_MARKS:
    H hard, M mid; easy, which LATF leaves out, unmarked)."""
    if df.empty:
        return empty_figure("No probe data: this run has no tokens.parquet rows.", title)
    labels = df.drop_duplicates("token_index").sort_values("token_index")["token_label"].tolist()
    z = df.pivot(index="token_label", columns="step", values="difficulty").reindex(labels)
    group = df.pivot(index="token_label", columns="step", values="group").reindex(labels)
    marks = {}
    if mark_groups:
        letters = group.apply(lambda column: column.map(lambda g: GROUP_MARKS.get(g, "") if isinstance(g, str) else ""))
        marks = {"text": letters.to_numpy(dtype=object), "texttemplate": "%{text}", "textfont": {"size": 10}}
    fig = go.Figure(
        go.Heatmap(
            z=z.to_numpy(dtype=float),
            x=[int(s) for s in z.columns],
            y=labels,
            customdata=group.to_numpy(dtype=object),
            colorscale=DIFFICULTY_SCALE,
            zmin=0.0,
            zmax=1.0,
            colorbar={"title": {"text": "s"}},
            name="difficulty",
            hovertemplate="token %{y}<br>step %{x}<br>difficulty %{z:.3f}<br>group %{customdata}<extra></extra>",
            **marks,
        )
    )
    fig.update_yaxes(title_text=LABELS["token"], autorange="reversed", type="category")
    fig.update_xaxes(title_text=LABELS["step"])
    fig.update_layout(height=max(320, 16 * len(labels) + 140))
    return apply_style(fig, title)


# ---------------------------------------------------------------- Fig. 1 top: group bands


def group_difficulty_frame(run: Run, split: str = "current") -> pd.DataFrame:
    """Difficulty distribution of the Hard / Mid / Easy groups at each probe step.

    split="current": the groups stored with the run (top r/2, next r/2, rest at the run's r);
    split="paper": groups recomputed at r = 0.5 (25/25/50, see `paper_groups`) so runs with
    different r compare. Columns GROUP_DIFFICULTY_COLUMNS: n tokens, median and the 10/25/75/90th
    percentiles of s (numpy's linear interpolation). Groups without tokens at a step are absent.
    """
    if split not in ("current", "paper"):
        raise ValueError(f'split must be "current" or "paper", not {split!r}')
    tokens = run.tokens
    if tokens.empty:
        return pd.DataFrame(columns=GROUP_DIFFICULTY_COLUMNS)
    tokens = tokens[["step", "difficulty", "group"]].dropna(subset=["difficulty"]).copy()
    if split == "paper":
        tokens["group"] = tokens.groupby("step")["difficulty"].transform(
            lambda s: pd.Series(paper_groups(s.to_numpy()), index=s.index)
        )
    rows = []
    for (step, group), values in tokens.groupby(["step", "group"], sort=True):
        if group not in GROUP_ORDER:
            continue
        s = values["difficulty"].to_numpy(dtype=float)
        # pandas-stubs types group keys as Hashable, which int() does not take; here they are step numbers
        row = {"step": int(step), "group": group, "n": len(s)}  # type: ignore[call-overload]
        row.update({name: float(np.percentile(s, q)) for name, q in PERCENTILES.items()})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=GROUP_DIFFICULTY_COLUMNS)
    order = {g: i for i, g in enumerate(GROUP_ORDER)}
    frame = frame.sort_values(["step", "group"], key=lambda c: c.map(order) if c.name == "group" else c)
    return frame.reset_index(drop=True)


def paper_groups(difficulty: np.ndarray, ratio: float = 0.5) -> np.ndarray:
    """Hard / Mid / Easy labels of tokens with difficulties `difficulty` [N] at ratio r.

    k = max(1, floor(r·N)) tokens are selected (docs/method.md §2); the top k // 2 by s are
    hard (the group sizes of the paper's release), the other selected ones mid, the rest easy.
    Ties keep the original order.
    """
    n = len(difficulty)
    k = max(1, int(np.floor(ratio * n)))
    n_hard = k // 2
    order = np.argsort(-np.asarray(difficulty, dtype=float), kind="stable")
    labels = np.full(n, "easy", dtype=object)
    labels[order[:n_hard]] = "hard"
    labels[order[n_hard:k]] = "mid"
    return labels


def group_difficulty_figure(df: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Per group: median line, p25–p75 band (darker) and p10–p90 band (lighter).

    Traces per group g: "g median", "g p25–p75", "g p10–p90" (legend), plus one hidden
    lower-edge trace per band that the band fills to.
    """
    if df.empty:
        return empty_figure("No probe data: this run has no tokens.parquet rows.", title)
    fig = go.Figure()
    for group in GROUP_ORDER:
        rows = df[df["group"] == group].sort_values("step")
        if rows.empty:
            continue
        color = GROUP_COLORS[group]
        for low, high, alpha in (("p10", "p90", 0.12), ("p25", "p75", 0.25)):
            fig.add_trace(
                go.Scatter(
                    x=rows["step"],
                    y=rows[low],
                    mode="lines",
                    line={"width": 0},
                    legendgroup=group,
                    showlegend=False,
                    hoverinfo="skip",
                    name=f"{group} {low}",
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=rows["step"],
                    y=rows[high],
                    mode="lines",
                    line={"width": 0},
                    fill="tonexty",
                    fillcolor=hex_to_rgba(color, alpha),
                    legendgroup=group,
                    name=f"{group} {low}–{high}",
                    hovertemplate=f"{group} {high}: %{{y:.3f}}<extra></extra>",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=rows["step"],
                y=rows["median"],
                mode="lines+markers",
                line={"color": color, "width": 2.5},
                legendgroup=group,
                name=f"{group} median",
                customdata=rows["n"],
                hovertemplate=f"{group}: median %{{y:.3f}} (%{{customdata}} tokens)<extra></extra>",
            )
        )
    fig.update_xaxes(title_text=LABELS["step"])
    fig.update_yaxes(title_text=LABELS["difficulty"], rangemode="tozero")
    return apply_style(fig, title)


# ---------------------------------------------------------------- Fig. 3a: loss and ratio


def loss_ratio_frame(run: Run) -> pd.DataFrame:
    """Per logged step: loss, kd, ce, ratio (r used at that step), next_ratio, mean_tau."""
    return run.metrics[LOSS_RATIO_COLUMNS].reset_index(drop=True)


def loss_ratio_figure(
    df: pd.DataFrame,
    events: pd.DataFrame | None = None,
    metric: str = "kd",
    title: str | None = None,
    smoothing: float = 0.0,
) -> go.Figure:
    """`metric` (default the distillation loss) on the left axis, r (step line) on the right.

    smoothing: weight w in [0, 1) of the bias-corrected EMA (analysis.figures.smoothing.ema) of
    the metric over its logged steps; above 0 the raw values are kept as a faint last trace
    named "<metric>, raw" (r is never smoothed: it is the controller's exact value).

    events: the run's events frame; "ratio_change" events (logged at the step whose loss
    moved r) become markers on the r axis at (step + 1, new r), the first step using the new
    r, named "ratio change"; "skipped_step" events crosses on the loss line
    named "skipped step"; stops, crashes and resumes dotted vertical lines
    (analysis.figures.interruptions). Traces: metric, "ratio r", then the event traces present.
    """
    if metric not in df.columns:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(df.columns[1:])}")
    if df.empty:
        return empty_figure("No metrics logged yet.", title)
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), not {smoothing}")
    if df[metric].isna().all() and metric != "loss":
        metric = "loss"  # runs logged without a kd column: the total is the distillation loss
    logged = df.dropna(subset=[metric])  # smooth over the steps that have the value, in order
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(
        go.Scatter(
            x=logged["step"],
            y=ema(logged[metric].to_numpy(dtype=float), smoothing),
            mode="lines",
            name=metric,
            line={"color": "#333333", "width": 2},
        ),
        secondary_y=False,
    )
    fig.add_trace(
        go.Scatter(
            x=df["step"],
            y=df["ratio"],
            mode="lines",
            name="ratio r",
            line={"color": GROUP_COLORS["hard"], "width": 2, "shape": "hv"},
        ),
        secondary_y=True,
    )
    if events is not None and not events.empty:
        changes = events[events["kind"] == "ratio_change"]
        if not changes.empty:
            old = _column(changes, "old")
            new = _column(changes, "new")
            # The controller updates r after step t; the new r is used from step t + 1,
            # which is where the step line changes level.
            fig.add_trace(
                go.Scatter(
                    x=changes["step"] + 1,
                    y=new,
                    mode="markers",
                    name="ratio change",
                    marker={"symbol": "diamond", "size": 9, "color": GROUP_COLORS["easy"]},
                    customdata=np.stack([changes["step"].to_numpy(dtype=float), old, new], axis=1),
                    hovertemplate="after step %{customdata[0]:.0f}: r %{customdata[1]:.3f} → "
                    "%{customdata[2]:.3f}<extra></extra>",
                ),
                secondary_y=True,
            )
        skipped = events[events["kind"] == "skipped_step"]
        if not skipped.empty:
            loss = df.dropna(subset=[metric])
            y = np.interp(skipped["step"], loss["step"], loss[metric]) if len(loss) else None
            fig.add_trace(
                go.Scatter(
                    x=skipped["step"],
                    y=y,
                    mode="markers",
                    name="skipped step",
                    marker={"symbol": "x", "size": 9, "color": "#d62728"},
                    text=skipped["message"],
                    hovertemplate="step %{x}: skipped (%{text})<extra></extra>",
                ),
                secondary_y=False,
            )
        mark_interruptions(fig, interruptions(events))
    if smoothing > 0:
        fig.add_trace(
            go.Scatter(
                x=logged["step"],
                y=logged[metric],
                mode="lines",
                name=f"{metric}, raw",
                line={"color": "#333333", "width": 1},
                opacity=0.3,
            ),
            secondary_y=False,
        )
    fig.update_xaxes(title_text=LABELS["step"])
    fig.update_yaxes(title_text=LABELS.get(metric, metric), secondary_y=False)
    fig.update_yaxes(
        title_text=LABELS["ratio"],
        range=[0, 1.05],
        secondary_y=True,
        showgrid=False,
        tickmode="linear",
        tick0=0.0,
        dtick=0.2,
    )
    return apply_style(fig, title, secondary_y=True)


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
