"""Comparing runs: paper Fig. 3b (loss curves of several runs), Fig. 3c–d (ROUGE-L against
the IDTS strength c) and a token-level diff of two runs' probe tokens.

    loss_curves_figure(loss_curves_frame(runs, smoothing=0.6))
    c_sweep_figure(c_sweep_frame(sweep_runs))
    token_diff_figure(token_diff_frame(plain_kd_run, adakd_run))
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.figures.interruptions import interruptions
from analysis.figures.smoothing import ema
from analysis.runs import Run, method_label
from analysis.style import GROUP_COLORS, LABELS, apply_style, empty_figure, run_color, token_label

LOSS_CURVE_COLUMNS = ["run", "label", "legend", "seed", "metric", "step", "value", "smoothed", "interruption"]
C_SWEEP_COLUMNS = ["method", "c", "dataset", "rouge_l_mean", "rouge_l_std", "n_seeds"]
TOKEN_DIFF_COLUMNS = [
    "example",
    "token_index",
    "token_id",
    "token_text",
    "token_label",
    "step",
    "difficulty_a",
    "difficulty_b",
    "difference",
    "hard_a",
    "hard_b",
    "group_a",
    "group_b",
    "status",
    "run_a",
    "run_b",
]
STATUSES = ("hard in both", "hard only in A", "hard only in B", "easy in both")
STATUS_COLORS = {
    "hard in both": GROUP_COLORS["hard"],
    "hard only in A": "#CC79A7",
    "hard only in B": "#009E73",
    "easy in both": "#bbbbbb",
}


# ---------------------------------------------------------------- Fig. 3b: loss curves


def loss_curves_frame(runs: list[Run], metric: str = "kd", smoothing: float = 0.0) -> pd.DataFrame:
    """One row per (run, logged step) of `metric` (a metrics.jsonl column).

    smoothed: the bias-corrected exponential moving average of weight w = `smoothing` in [0, 1)
    (``ema``; w = 0 leaves the values). interruption: on the first row logged after a resume
    (or the last one before a stop that was not resumed), what happened there
    (analysis.figures.interruptions), else None. label: method_label of the run; legend: the label, or
    "label · seed N" when several runs share the label and their seeds tell them apart, else
    "label · run name". Runs that never logged the metric are left out.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), not {smoothing}")
    if runs and metric not in runs[0].metrics.columns:
        raise ValueError(f"unknown metric {metric!r}; metrics columns: {', '.join(runs[0].metrics.columns)}")
    return with_legends([run_curve(run, metric, smoothing) for run in runs])


def run_curve(run: Run, metric: str, smoothing: float) -> pd.DataFrame:
    """One run's rows of ``loss_curves_frame`` before the legends (which depend on the other
    runs): a page caches this per run, so adding a run computes only that run's curve."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), not {smoothing}")
    if metric not in run.metrics.columns:  # never logged (or no metrics at all): left out
        return pd.DataFrame(columns=LOSS_CURVE_COLUMNS)
    rows = run.metrics[["step", metric]].dropna()
    values = rows[metric].to_numpy(dtype=float)
    label = method_label(run.config)
    steps = rows["step"].to_numpy()
    return pd.DataFrame(
        {
            "run": run.name,
            "label": label,
            "legend": label,
            "seed": run.seed,
            "metric": metric,
            "step": steps,
            "value": values,
            "smoothed": ema(values, smoothing),
            "interruption": _interruption_column(steps, interruptions(run.events)),
        },
        columns=LOSS_CURVE_COLUMNS,
    )


def _interruption_column(steps: np.ndarray, marks: pd.DataFrame) -> list[str | None]:
    """Each mark's label on the row where the curve shows it: the first logged step ≥ a resume's
    step (training continues after it), the last logged step ≤ a stop's or failure's; several
    marks on one row are joined with "; "."""
    column: list[str | None] = [None] * len(steps)
    for step, kind, label in zip(marks["step"], marks["kind"], marks["label"], strict=True):
        if kind == "resumed":
            at = int(np.searchsorted(steps, step, side="left"))
        else:
            at = int(np.searchsorted(steps, step, side="right")) - 1
        if 0 <= at < len(steps):
            column[at] = label if column[at] is None else f"{column[at]}; {label}"
    return column


def with_legends(curves: list[pd.DataFrame]) -> pd.DataFrame:
    """The runs' curves (``run_curve``) in one frame, each legend made unique among them."""
    curves = [c.copy() for c in curves if not c.empty]
    if not curves:
        return pd.DataFrame(columns=LOSS_CURVE_COLUMNS)
    labels = [str(c["label"].iloc[0]) for c in curves]
    seeds = [c["seed"].iloc[0] for c in curves]
    for curve, label in zip(curves, labels, strict=True):
        same = [seed for other, seed in zip(labels, seeds, strict=True) if other == label]
        if len(same) == 1:
            continue
        seed = curve["seed"].iloc[0]
        by_seed = seed is not None and not pd.isna(seed) and same.count(seed) == 1
        curve["legend"] = f"{label} · seed {int(seed)}" if by_seed else f"{label} · {curve['run'].iloc[0]}"
    return pd.concat(curves, ignore_index=True)[LOSS_CURVE_COLUMNS]


# Line styles cycled with the colours, so runs with identical curves stay visible (a dashed line
# over a solid one) and the figure reads in greyscale.
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "triangle-down")


def loss_curves_figure(
    df: pd.DataFrame, title: str | None = None, *, log_y: bool = False, aggregate_seeds: bool = False
) -> go.Figure:
    """One line per run (named by its `legend`) of the smoothed values, each with its own colour,
    dash and marker; when smoothing is on, the raw values as a faint line of the same colour
    (named "<legend> (raw)", no legend); a run's stops and resumes as vertical ticks on its
    line ("<legend>: stop / resume", no legend; not on seed means). Hover shows every run at
    the step.

    aggregate_seeds: runs sharing a method label (runs that differ only by seed) become one mean
    line with a ± one standard deviation band over them, at the steps all of them logged
    ("<label> (mean ± std, n seeds)"). log_y: logarithmic y axis."""
    if df.empty:
        return empty_figure("None of the selected runs logged this metric.", title)
    fig = go.Figure()
    groups = (
        _seed_groups(df)
        if aggregate_seeds
        else [(str(legend), rows, 1) for legend, rows in df.groupby("legend", sort=False)]
    )
    for i, (legend, rows, n) in enumerate(groups):
        color, dash, symbol = run_color(i), DASHES[i % len(DASHES)], SYMBOLS[i % len(SYMBOLS)]
        if n > 1:
            band_x = list(rows["step"]) + list(rows["step"])[::-1]
            band_y = list(rows["smoothed"] + rows["std"]) + list(rows["smoothed"] - rows["std"])[::-1]
            fig.add_trace(
                go.Scatter(
                    x=band_x,
                    y=band_y,
                    fill="toself",
                    fillcolor=color,
                    opacity=0.18,
                    line={"width": 0},
                    name=f"{legend} (± std)",
                    legendgroup=legend,
                    showlegend=False,
                    hoverinfo="skip",
                )
            )
        elif not np.allclose(rows["smoothed"], rows["value"], equal_nan=True):
            fig.add_trace(
                go.Scatter(
                    x=rows["step"],
                    y=rows["value"],
                    mode="lines",
                    name=f"{legend} (raw)",
                    legendgroup=legend,
                    showlegend=False,
                    line={"color": color, "width": 1, "dash": dash},
                    opacity=0.25,
                    hoverinfo="skip",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=rows["step"],
                y=rows["smoothed"],
                mode="lines+markers",
                name=legend,
                legendgroup=legend,
                line={"color": color, "width": 2.2, "dash": dash},
                marker={"symbol": symbol, "size": 7, "color": color, "maxdisplayed": 12},
                hovertemplate=f"{legend}: %{{y:.4f}}<extra></extra>",
            )
        )
        marked = rows[rows["interruption"].notna()] if n == 1 and "interruption" in rows else rows.iloc[:0]
        if not marked.empty:  # on the run's own line: several runs' stops stay told apart
            fig.add_trace(
                go.Scatter(
                    x=marked["step"],
                    y=marked["smoothed"],
                    mode="markers",
                    name=f"{legend}: stop / resume",
                    legendgroup=legend,
                    showlegend=False,
                    marker={"symbol": "line-ns", "size": 18, "line": {"width": 3, "color": color}},
                    text=marked["interruption"],
                    hovertemplate=f"{legend}: %{{text}}<extra></extra>",
                )
            )
    metric = str(df["metric"].iloc[0])
    fig.update_xaxes(title_text=LABELS["step"])
    fig.update_yaxes(title_text=LABELS.get(metric, metric), type="log" if log_y else "linear")
    fig.update_layout(hovermode="x unified")
    return apply_style(fig, title)


def _seed_groups(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame, int]]:
    """(legend, rows with step / smoothed (the mean) / value / std, number of runs) per method
    label; a label with one run keeps its own rows and legend."""
    groups = []
    for label, rows in df.groupby("label", sort=False):
        runs = list(dict.fromkeys(rows["run"]))
        if len(runs) == 1:
            groups.append((str(rows["legend"].iloc[0]), rows, 1))
            continue
        wide = rows.pivot_table(index="step", columns="run", values="smoothed").dropna()  # steps all logged
        mean = pd.DataFrame(
            {
                "step": wide.index.to_numpy(),
                "smoothed": wide.mean(axis=1).to_numpy(),
                "value": wide.mean(axis=1).to_numpy(),
                "std": wide.std(axis=1, ddof=1).to_numpy(),
            }
        )
        groups.append((f"{label} (mean ± std, {len(runs)} seeds)", mean, len(runs)))
    return groups


# ---------------------------------------------------------------- Fig. 3c–d: c sweep


def c_sweep_frame(runs: list[Run], finished_only: bool = True) -> pd.DataFrame:
    """ROUGE-L of the final student evaluation against c, per method, dataset and "average".

    Uses the runs that apply IDTS (idts "on" or "inverse"; c = idts_c) and have a student
    evaluation (finished ones only unless finished_only=False). method: the run's method label
    without its c (``method_label`` at c = 0.5), so runs of different methods (rkl + IDTS and
    rkl + AdaKD, say) are never pooled into one point. Per (method, c, dataset): mean and
    sample standard deviation (ddof = 1; NaN for one seed) over the runs, n_seeds = runs.
    Sorted by method (order of first appearance), dataset ("average" last), then c.
    """
    rows = []
    for run in runs:
        if run.config.get("idts", "on") not in ("on", "inverse"):
            continue
        if finished_only and run.state != "finished":
            continue
        final = run.final_eval("student")
        c = run.config.get("idts_c", 0.5)
        method = method_label({**run.config, "idts_c": 0.5})
        for dataset, score in zip(final["dataset"], final["rouge_l"], strict=True):
            rows.append({"method": method, "c": float(c), "dataset": dataset, "rouge_l": float(score)})
    if not rows:
        return pd.DataFrame(columns=C_SWEEP_COLUMNS)
    scores = pd.DataFrame(rows)
    frame = (
        scores.groupby(["method", "dataset", "c"], sort=False)["rouge_l"]
        .agg(rouge_l_mean="mean", rouge_l_std="std", n_seeds="count")
        .reset_index()
    )
    frame["_method"] = frame["method"].map({m: i for i, m in enumerate(dict.fromkeys(scores["method"]))})
    frame["_last"] = frame["dataset"] == "average"
    frame = frame.sort_values(["_method", "_last", "dataset", "c"]).drop(columns=["_method", "_last"])
    return frame[C_SWEEP_COLUMNS].reset_index(drop=True)


def c_sweep_figure(df: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Left: ROUGE-L against c, one line per dataset (Fig. 3c); right: the average (Fig. 3d).
    Error bars = std over seeds where there are several. Traces: one per dataset + "average",
    for each method; with several methods each trace is named "<dataset> · <method>" and a
    method keeps one line style (solid, dashed, dotted, ...)."""
    if df.empty:
        return empty_figure("No finished runs with IDTS and a student evaluation.", title)
    fig = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=("per dataset", "average over datasets")
    )
    datasets = [d for d in df["dataset"].unique() if d != "average"]
    methods = list(dict.fromkeys(df["method"])) if "method" in df.columns else [None]
    dashes = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
    for m, method in enumerate(methods):
        part = df if method is None else df[df["method"] == method]
        for i, dataset in enumerate([*datasets, "average"]):
            rows = part[part["dataset"] == dataset].sort_values("c")
            if rows.empty:
                continue
            color = "#222222" if dataset == "average" else run_color(i)
            name = dataset if len(methods) == 1 else f"{dataset} · {method}"
            fig.add_trace(
                go.Scatter(
                    x=rows["c"],
                    y=rows["rouge_l_mean"],
                    mode="lines+markers",
                    name=name,
                    line={"color": color, "width": 2.5, "dash": dashes[m % len(dashes)]},
                    customdata=rows["n_seeds"],
                    error_y={"type": "data", "array": rows["rouge_l_std"].fillna(0.0), "visible": True},
                    hovertemplate=f"{name}: c=%{{x}} ROUGE-L %{{y:.2f}} (%{{customdata}} seeds)<extra></extra>",
                ),
                row=1,
                col=2 if dataset == "average" else 1,
            )
    fig.update_xaxes(title_text=LABELS["c"])
    fig.update_yaxes(title_text=LABELS["rouge_l"], col=1)
    return apply_style(fig, title)


# ---------------------------------------------------------------- token-level run diff


def token_diff_frame(run_a: Run, run_b: Run, step: int | None = None) -> pd.DataFrame:
    """Probe tokens of two runs side by side at one probe step (default: the last step
    both runs probed).

    Tokens are matched by (example, token_index) and must have the same token_id (the same
    probe set); difference = difficulty_b − difficulty_a; hard_* = s above the median of
    that run's probe tokens at the step; status: "hard in both" | "hard only in A" |
    "hard only in B" | "easy in both". Columns TOKEN_DIFF_COLUMNS. Raises ValueError when
    the runs share no probe step or no probe token.
    """
    steps_a, steps_b = set(run_a.probe_steps), set(run_b.probe_steps)
    common = sorted(steps_a & steps_b)
    if step is None:
        if not common:
            raise ValueError(
                f"{run_a.name} and {run_b.name} share no probe step ({_steps(steps_a)} vs {_steps(steps_b)})"
            )
        step = common[-1]
    elif step not in common:
        raise ValueError(f"step {step} is not a probe step of both runs (common: {_steps(common)})")
    keep = ["example", "token_index", "token_id", "token_text", "difficulty", "hard", "group"]
    a = run_a.tokens.loc[run_a.tokens["step"] == step, keep]
    b = run_b.tokens.loc[run_b.tokens["step"] == step, keep]
    merged = a.merge(b, on=["example", "token_index", "token_id"], suffixes=("_a", "_b"))
    if merged.empty:
        raise ValueError(
            f"{run_a.name} and {run_b.name} have no probe token in common at step "
            f"{step}: they were probed on different examples"
        )
    hard_a = merged["hard_a"].fillna(False).astype(bool).to_numpy()
    hard_b = merged["hard_b"].fillna(False).astype(bool).to_numpy()
    status = np.select([hard_a & hard_b, hard_a, hard_b], STATUSES[:3], default=STATUSES[3])
    frame = pd.DataFrame(
        {
            "example": merged["example"],
            "token_index": merged["token_index"],
            "token_id": merged["token_id"],
            "token_text": merged["token_text_a"],
            "token_label": [
                f"ex {e} · {token_label(i, t)}"
                for e, i, t in zip(merged["example"], merged["token_index"], merged["token_text_a"], strict=True)
            ],
            "step": step,
            "difficulty_a": merged["difficulty_a"],
            "difficulty_b": merged["difficulty_b"],
            "difference": merged["difficulty_b"] - merged["difficulty_a"],
            "hard_a": hard_a,
            "hard_b": hard_b,
            "group_a": merged["group_a"],
            "group_b": merged["group_b"],
            "status": status,
            "run_a": run_a.name,
            "run_b": run_b.name,
        }
    )
    return frame.sort_values(["example", "token_index"]).reset_index(drop=True)[TOKEN_DIFF_COLUMNS]


def token_diff_figure(df: pd.DataFrame, top: int = 20, title: str | None = None) -> go.Figure:
    """Left: difficulty in A (x) against B (y) per token, one trace per status present, with
    the y = x diagonal; right: the `top` tokens with the largest |B − A| as horizontal bars
    (trace "difficulty B − A"; sky blue = easier in B, vermilion = harder in B). Every point and
    bar carries [example, token_index] as customdata (a click names the token)."""
    if df.empty:
        return empty_figure("No probe tokens to compare.", title)
    name_a, name_b = str(df["run_a"].iloc[0]), str(df["run_b"].iloc[0])
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.5, 0.5],
        horizontal_spacing=0.22,
        subplot_titles=(f"difficulty at step {int(df['step'].iloc[0])}", f"largest changes (top {min(top, len(df))})"),
    )
    for status in STATUSES:
        rows = df[df["status"] == status]
        if rows.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=rows["difficulty_a"],
                y=rows["difficulty_b"],
                mode="markers",
                name=status,
                marker={"color": STATUS_COLORS[status], "size": 7, "line": {"width": 0.5, "color": "#ffffff"}},
                text=rows["token_label"],
                customdata=rows[["example", "token_index"]].to_numpy(dtype=int),
                hovertemplate="%{text}<br>A %{x:.3f} · B %{y:.3f}<extra>" + status + "</extra>",
            ),
            row=1,
            col=1,
        )
    fig.add_shape(
        type="line", x0=0, y0=0, x1=1, y1=1, line={"dash": "dash", "color": "#666666", "width": 1}, row=1, col=1
    )
    largest = df.reindex(df["difference"].abs().sort_values(ascending=False).index).head(top)
    largest = largest.iloc[::-1]  # largest at the top of a horizontal bar chart
    fig.add_trace(
        go.Bar(
            x=largest["difference"],
            y=largest["token_label"],
            orientation="h",
            name="difficulty B − A",
            showlegend=False,
            marker={"color": np.where(largest["difference"] < 0, "#56B4E9", "#D55E00")},
            customdata=largest[["example", "token_index"]].to_numpy(dtype=int),
            hovertemplate="%{y}: B − A = %{x:.3f}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.add_vline(x=0.0, line_color="#444444", line_width=1, row=1, col=2)
    fig.update_xaxes(title_text=f"difficulty in A: {name_a}", range=[-0.02, 1.02], row=1, col=1)
    fig.update_yaxes(title_text=f"difficulty in B: {name_b}", range=[-0.02, 1.02], row=1, col=1)
    fig.update_xaxes(title_text="difficulty B − A", row=1, col=2)
    fig.update_yaxes(type="category", row=1, col=2)
    fig.update_layout(height=max(450, 22 * len(largest) + 160))
    return apply_style(fig, title)


def _steps(steps) -> str:
    return ", ".join(map(str, sorted(steps))) or "none"
