"""Competence over training: how far the student has come towards its teacher at each evaluation.

For a run evaluated during training (``eval_interval`` > 0, or several runs of one recipe), each
evaluation of the student gives its held-out cross-entropy on the reference replies, its
KL(teacher ‖ student) and its share of degenerate replies. Against the run's evaluations of the
teacher and of the initial student (step 0), the share of the cross-entropy gap closed is

    gap_closed(s) = (CE_init − CE_s) / (CE_init − CE_teacher)        (0 at step 0, 1 = the teacher)

(the study regime's target for a default run is gap_closed ≥ 0.5). The x axis is the step; the
frame also carries the training time to that step, the sum of ``step_seconds`` in metrics.jsonl
(probes and evaluations excluded), which depends on the machine and its load.

    df = competence_frame(run); fig = competence_figure(df, run.name)

Frame columns: step, minutes, ce, kl_teacher, degenerate (fraction), rouge_l, gap_closed,
plus the teacher's and the initial student's ce / degenerate as constant columns
(teacher_ce, init_ce, teacher_degenerate, init_degenerate).
"""

from __future__ import annotations

import math
import numbers

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.runs import Run
from analysis.style import GROUP_COLORS, LABELS, apply_style, empty_figure

COMPETENCE_COLUMNS = [
    "step",
    "minutes",
    "ce",
    "kl_teacher",
    "degenerate",
    "rouge_l",
    "gap_closed",
    "teacher_ce",
    "init_ce",
    "teacher_degenerate",
    "init_degenerate",
]


def _average(run: Run, model: str) -> pd.DataFrame:
    rows = run.evals[(run.evals["model"] == model) & (run.evals["dataset"] == "average")]
    return rows.sort_values("step").drop_duplicates("step", keep="last")


def _value(value: object) -> float:
    """A number from an eval cell; None (a metric not measured) -> NaN."""
    return float(value) if isinstance(value, numbers.Real) else math.nan


def competence_frame(run: Run) -> pd.DataFrame:
    """One row per evaluation of the student, with step 0 = the initial student (empty frame
    with COMPETENCE_COLUMNS when the run has no evaluation of the teacher or the initial student)."""
    teacher, init, student = (_average(run, m) for m in ("teacher", "student_init", "student"))
    if teacher.empty or init.empty:
        return pd.DataFrame(columns=COMPETENCE_COLUMNS)
    teacher_row, init_row = teacher.iloc[-1], init.iloc[-1]
    teacher_ce, init_ce = _value(teacher_row.get("ce")), _value(init_row.get("ce"))
    seconds = pd.Series(dtype=float)
    if not run.metrics.empty and "step_seconds" in run.metrics:
        per_step = run.metrics.set_index("step")["step_seconds"].astype(float)
        seconds = per_step.fillna(0.0).cumsum()
    rows = []
    for step, row in [(0, init_row), *((int(r["step"]), r) for _, r in student.iterrows() if int(r["step"]) > 0)]:
        ce = _value(row.get("ce"))
        gap = init_ce - teacher_ce
        done = seconds[seconds.index <= step]
        rows.append(
            {
                "step": step,
                "minutes": float(done.iloc[-1]) / 60.0 if step > 0 and not done.empty else 0.0,
                "ce": ce,
                "kl_teacher": _value(row.get("kl_teacher")),
                "degenerate": _value(row.get("degenerate")),
                "rouge_l": _value(row.get("rouge_l")),
                "gap_closed": (init_ce - ce) / gap if gap > 0 else math.nan,
                "teacher_ce": teacher_ce,
                "init_ce": init_ce,
                "teacher_degenerate": _value(teacher_row.get("degenerate")),
                "init_degenerate": _value(init_row.get("degenerate")),
            }
        )
    return pd.DataFrame(rows, columns=COMPETENCE_COLUMNS)


def competence_figure(df: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Two panels over the step axis: held-out cross-entropy (student, with the teacher's and
    the initial student's as dashed lines, and the share of the gap closed on the right axis),
    and the share of degenerate replies (the teacher's dashed)."""
    if df.empty:
        return empty_figure("No evaluation of the teacher and the initial student in this run.")
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        specs=[[{"secondary_y": True}], [{}]],
        subplot_titles=("held-out cross-entropy on the reference replies", "degenerate replies"),
    )
    student = GROUP_COLORS["hard"]
    fig.add_trace(
        go.Scatter(x=df["step"], y=df["ce"], mode="lines+markers", name="student CE", line={"color": student}),
        row=1,
        col=1,
    )
    for column, name, color in (("teacher_ce", "teacher", "#000000"), ("init_ce", "initial student", "#7f7f7f")):
        fig.add_trace(
            go.Scatter(x=df["step"], y=df[column], mode="lines", name=name, line={"color": color, "dash": "dash"}),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=df["step"],
            y=100 * df["gap_closed"],
            mode="lines+markers",
            name="CE gap closed (%)",
            line={"color": GROUP_COLORS["easy"], "dash": "dot"},
            marker={"symbol": "diamond"},
        ),
        row=1,
        col=1,
        secondary_y=True,
    )
    for column, name, color, dash in (
        ("degenerate", "student degenerate (%)", student, None),
        ("teacher_degenerate", "teacher degenerate (%)", "#000000", "dash"),
    ):
        fig.add_trace(
            go.Scatter(
                x=df["step"],
                y=100 * df[column],
                mode="lines" if dash else "lines+markers",
                name=name,
                line={"color": color, "dash": dash},
                showlegend=False,
            ),
            row=2,
            col=1,
        )
    fig.update_yaxes(title_text=LABELS["ce"], row=1, col=1)
    fig.update_yaxes(
        title_text="CE gap closed (%)",
        range=[0, 100],
        tickmode="linear",
        dtick=25,
        showgrid=False,  # the grid follows the CE axis; a second one would not line up
        row=1,
        col=1,
        secondary_y=True,
    )
    fig.update_yaxes(title_text="degenerate replies (%)", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text=LABELS["step"], row=2, col=1)
    fig.update_layout(height=620, hovermode="x unified")
    apply_style(fig, title, secondary_y=True)
    # below the plots: at the right the legend would sit on the secondary axis' title
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0.0}, margin={"b": 110})
    return fig
