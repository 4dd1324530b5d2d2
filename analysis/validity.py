"""Does the experiment work? The validity gate of a run and of a study, from eval.jsonl.

An experiment must be shown to work before methods are compared on it: on held-out prompts the
teacher must beat the trained student, and the trained student must beat the student it started
from, each gap larger than twice the noise (adakd.evaluation.protocol.gate_check), on two metrics:

- ROUGE-L (higher is better) against the long references, sampled replies;
- the student's cross-entropy on the references (lower is better; no sampling).

Noise: for one run, the spread of ROUGE-L over generation seeds (the largest of the three
records'); cross-entropy has none within a run (deterministic), so any strictly positive gap
passes there. For a study arm with several training seeds, the standard deviation of the final
student's score over those seeds, or the generation spread if that is larger.

    checks = run_gate(run)          # [] when the run has no protocol evaluation to judge
    checks = study_gate(runs)       # the runs of one arm (seeds), same teacher and student
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from adakd.evaluation.protocol import GateCheck, gate_check, gate_passed
from analysis.replies import EMPTY_REPLY_LIMIT, empty_reply_share, replies_frame
from analysis.runs import Run

__all__ = [
    "GateCheck",
    "baseline_problems",
    "evaluation_summary",
    "final_average",
    "gate_passed",
    "gate_summary",
    "run_gate",
    "study_gate",
]

METRICS = (("rouge_l", "ROUGE-L", True), ("ce", "held-out cross-entropy", False))


def final_average(run: Run, model: str, column: str) -> float:
    """`column` of the run's last evaluation of `model`, averaged over evaluation sets (NaN when absent)."""
    rows = run.final_eval(model)
    rows = rows[rows["dataset"] == "average"]
    if rows.empty or column not in rows:
        return math.nan
    value = rows[column].iloc[0]
    return float(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else math.nan


def _has_protocol(run: Run) -> bool:
    return all(not math.isnan(final_average(run, m, "ce")) for m in ("teacher", "student_init", "student"))


def run_gate(run: Run) -> list[GateCheck]:
    """The gate for one run: teacher vs its final student vs its initial student. [] when the run
    has no teacher / initial / final evaluation under the protocol (e.g. written before it)."""
    if not _has_protocol(run):
        return []
    spreads = [final_average(run, m, "rouge_l_spread") for m in ("teacher", "student_init", "student")]
    noise = max((s for s in spreads if not math.isnan(s)), default=0.0)
    checks = []
    for column, label, higher in METRICS:
        spread = noise if column == "rouge_l" else 0.0  # CE is deterministic within a run
        checks.append(
            gate_check(
                label,
                final_average(run, "teacher", column),
                final_average(run, "student_init", column),
                final_average(run, "student", column),
                spread,
                higher,
            )
        )
    return checks


def study_gate(runs: Sequence[Run]) -> list[GateCheck]:
    """The gate for several runs of one arm (training seeds): the final student's mean over runs,
    noise = max(sd over runs, largest generation spread). [] unless every run has the protocol."""
    runs = [r for r in runs if _has_protocol(r)]
    if not runs:
        return []
    checks = []
    for column, label, higher in METRICS:
        finals = [final_average(r, "student", column) for r in runs]
        seed_sd = statistics.stdev(finals) if len(finals) > 1 else 0.0
        generation = 0.0
        if column == "rouge_l":
            spreads = [
                final_average(r, m, "rouge_l_spread") for r in runs for m in ("teacher", "student_init", "student")
            ]
            generation = max((s for s in spreads if not math.isnan(s)), default=0.0)
        first = runs[0]
        checks.append(
            gate_check(
                label,
                final_average(first, "teacher", column),
                final_average(first, "student_init", column),
                statistics.fmean(finals),
                max(seed_sd, generation),
                higher,
            )
        )
    return checks


MODEL_NAMES = {"teacher": "teacher", "student_init": "initial student", "student": "final student"}


def evaluation_summary(run: Run):
    """One row per model (teacher, initial student, final student) of its last evaluation,
    averaged over datasets: step, ROUGE-L, its spread over generation seeds, degenerate share,
    held-out cross-entropy and KL(teacher ‖ model). Empty when the run has no evaluation."""
    import pandas as pd

    rows = []
    for model, name in MODEL_NAMES.items():
        final = run.final_eval(model)
        final = final[final["dataset"] == "average"]
        if final.empty:
            continue
        row = final.iloc[0]
        rows.append(
            {
                "model": name,
                "step": int(row["step"]),
                "prompts": row["n"],
                "ROUGE-L": row["rouge_l"],
                "± seeds": row.get("rouge_l_spread"),
                "degenerate %": 100 * row["degenerate"] if pd.notna(row.get("degenerate")) else None,
                "CE (nats)": row.get("ce"),
                "KL(T‖model)": row.get("kl_teacher"),
            }
        )
    return pd.DataFrame(rows)


def gate_summary(checks: Sequence[GateCheck]) -> str:
    """One line: "passes" / "FAILS: <reasons>" / "not measured"."""
    if not checks:
        return "not measured (no teacher, initial and final evaluation under the protocol)"
    if gate_passed(checks):
        return "passes: " + "; ".join(f"{c.metric}: {c.reason}" for c in checks)
    return "FAILS: " + "; ".join(f"{c.metric}: {c.reason}" for c in checks if not c.passed)


def baseline_problems(run: Run) -> list[str]:
    """Why the run's scores are no basis for comparing methods ([] when none is known): its
    validity gate fails (run_gate), or at least EMPTY_REPLY_LIMIT of its final student's stored
    replies are blank. A run with no protocol evaluation is not flagged (nothing to judge)."""
    problems = []
    checks = run_gate(run)
    if checks and not gate_passed(checks):  # the reasons with their numbers: the Runs page
        problems.append("fails the validity gate on " + " and ".join(c.metric for c in checks if not c.passed))
    share = empty_reply_share(replies_frame(run))
    if share >= EMPTY_REPLY_LIMIT:  # NaN (no replies stored) compares False
        problems.append(f"{share:.0%} of the final student's stored replies are empty")
    return problems
