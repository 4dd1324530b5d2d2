"""Results report: competence over training, from runs evaluated during training.

A run with ``eval_interval`` > 0 evaluates its student at several steps (analysis/figures/
competence.py builds the frame). For each such run, whether it is an arm of the study or a run of
another recipe (e.g. a longer run made to find where more steps stop paying), the section gives
one row per evaluation: held-out cross-entropy, the share of the CE gap to the teacher closed,

    gap_closed(s) = (CE_init − CE_s) / (CE_init − CE_teacher),

KL(teacher ‖ student), degenerate replies and ROUGE-L, and two readings with their rules stated:
the first evaluation that closes half of the gap (the study regime's target), and the knee, the
first evaluation after which the next interval adds fewer than KNEE_POINTS points of gap per
100 steps.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.figures.competence import competence_frame
from analysis.report.markdown import md_table
from analysis.report.study import Study
from analysis.runs import Run

KNEE_POINTS = 5.0  # points of the CE gap per 100 steps below which further steps count as the flat part
TARGET = 0.5  # the study regime's target share of the CE gap closed


def curve_runs(study: Study) -> list[Run]:
    """Runs of the study or of other recipes whose student was evaluated at two or more steps."""
    found = []
    for run in [*study.runs, *study.other_recipes]:
        student = run.evals[(run.evals["model"] == "student") & (run.evals["dataset"] == "average")]
        if student["step"].nunique() >= 2 and not competence_frame(run).empty:
            found.append(run)
    return found


def knee_step(df: pd.DataFrame) -> int | None:
    """The first evaluated step after which the next interval closes fewer than KNEE_POINTS
    points of the gap per 100 steps (None when every interval still closes more)."""
    steps = [int(s) for s in df["step"].tolist()]
    gaps = [float(g) for g in df["gap_closed"].tolist()]
    for i in range(1, len(steps) - 1):  # from the first trained evaluation on
        per_100_steps = 100 * (gaps[i + 1] - gaps[i]) * 100 / (steps[i + 1] - steps[i])
        if per_100_steps < KNEE_POINTS:
            return steps[i]
    return None


def _pct(value: float, digits: int = 0) -> str:
    return "–" if math.isnan(value) else f"{100 * value:.{digits}f} %"


def _num(value: float, digits: int) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def run_reading(df: pd.DataFrame) -> str:
    """Where the run reaches the target share of the gap, and its knee, in words."""
    rows = df.to_dict("records")
    reached = [row for row in rows if row["gap_closed"] >= TARGET]
    if not reached:
        best = max(float(row["gap_closed"]) for row in rows)
        target = (
            f"It does not close {TARGET:.0%} of the CE gap within its {int(rows[-1]['step'])} steps "
            f"(best {_pct(best)})."
        )
    else:
        first = reached[0]
        target = (
            f"It first closes {TARGET:.0%} of the CE gap at step {int(first['step'])} "
            f"({_pct(first['gap_closed'])}, after {first['minutes']:.0f} min of training steps in this run)."
        )
    knee = knee_step(df)
    knee_text = (
        f"Knee (the next interval adds < {KNEE_POINTS:.0f} points of the gap per 100 steps): step {knee}."
        if knee is not None
        else f"No knee within the run: every interval still adds ≥ {KNEE_POINTS:.0f} points of the gap per 100 steps."
    )
    return f"{target} {knee_text}"


def competence_section(study: Study) -> str:
    """## Competence over training: one table per run evaluated during training ("" when none)."""
    runs = curve_runs(study)
    if not runs:
        return ""
    lines = [
        "## Competence over training",
        "",
        "Runs evaluated during training (`eval_interval` > 0). Step 0 is the initial student. "
        "*CE gap closed* = (CE_init − CE_step) / (CE_init − CE_teacher); *minutes* = the run's own "
        "training-step time up to that step (probes and evaluations excluded; it depends on the "
        "machine's load). Runs of another recipe than the study's are marked and never enter its tables.",
    ]
    for run in runs:
        df = competence_frame(run)
        rows = df.to_dict("records")
        apart = " (another recipe than the study's)" if run in study.other_recipes else ""
        config = run.config
        lines += [
            "",
            f"### {run.path.parent.name}/{run.name}{apart}",
            "",
            f"{config.get('max_steps')} steps, lr {config.get('lr')} ({config.get('lr_schedule')}), "
            f"batch {config.get('batch_size')}, evaluated every {config.get('eval_interval')} steps on "
            f"{config.get('eval_holdout') or config.get('eval_examples')} held-out prompts with "
            f"{config.get('eval_seeds')} generation seed(s). Teacher: CE {rows[0]['teacher_ce']:.3f}, "
            f"degenerate {_pct(rows[0]['teacher_degenerate'], 1)}.",
            "",
            md_table(
                ["step", "minutes", "held-out CE", "CE gap closed", "KL(teacher ‖ student)", "degenerate", "ROUGE-L"],
                [
                    [
                        int(row["step"]),
                        f"{row['minutes']:.1f}",
                        _num(row["ce"], 3),
                        _pct(row["gap_closed"], 1),
                        _num(row["kl_teacher"], 3),
                        _pct(row["degenerate"], 1),
                        _num(row["rouge_l"], 2),
                    ]
                    for row in rows
                ],
            ),
            "",
            run_reading(df),
        ]
    return "\n".join(lines)
