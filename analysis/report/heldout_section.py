"""Results report: the held-out evaluation of each ablation arm and its paired difference to base.

These are the numbers the validity gate judges (analysis/validity.py), per run: ROUGE-L of sampled
replies (mean over generation seeds), the student's cross-entropy on the reference replies, KL
(teacher ‖ student) on them, and the share of degenerate replies (docs/method.md §7). Each arm is
then compared with base of the same training seed: the runs of one seed see the same batches and
are scored on the same prompts, so the difference removes what the seeds share, and its mean over
seeds gets a 95 % Student-t interval

    mean(d) ± t_{0.975, n−1} · sd(d) / √n,   d_s = metric(arm, seed s) − metric(base, seed s).
"""

from __future__ import annotations

import math
import statistics

from analysis.report.markdown import md_table, seeds_text
from analysis.report.study import Study, component
from analysis.runs import Run
from analysis.validity import final_average, study_gate

ARM_ORDER = ("base", "+IDTS", "+LATF", "full (AdaKD)")
# (eval column, label, higher is better, format)
METRICS: tuple[tuple[str, str, bool, str], ...] = (
    ("rouge_l", "ROUGE-L", True, ".2f"),
    ("ce", "held-out CE", False, ".3f"),
    ("kl_teacher", "KL(teacher ‖ student)", False, ".3f"),
    ("degenerate", "degenerate replies", False, ".1%"),
)
# Two-sided 95 % quantiles of Student's t for 1..10 degrees of freedom (standard tables).
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def paired_interval(differences: list[float]) -> tuple[float, float] | None:
    """(mean, half-width of the 95 % t interval) of paired differences; None below two pairs."""
    n = len(differences)
    if n < 2:
        return None
    t = T_975[min(n - 1, len(T_975)) - 1]
    return statistics.fmean(differences), t * statistics.stdev(differences) / math.sqrt(n)


def _value(value: float, fmt: str) -> str:
    return "–" if math.isnan(value) else format(value, fmt)


def heldout_section(study: Study) -> str:
    """## Held-out evaluation: one row per ablation run, then each arm minus base, paired by seed."""
    runs = sorted(
        (r for r in study.ablation if not math.isnan(final_average(r, "student", "ce"))),
        key=lambda r: (ARM_ORDER.index(component(r) or "base"), r.seed or 0),
    )
    if not runs:
        return ""
    lines = ["## Held-out evaluation of the ablation arms", ""]
    rows: list[list[str]] = []
    for run in runs:
        spread = final_average(run, "student", "rouge_l_spread")
        rouge = _value(final_average(run, "student", "rouge_l"), ".2f") + (
            "" if math.isnan(spread) else f" ± {spread:.2f}"
        )
        rows.append(
            [str(component(run)), str(run.seed), rouge]
            + [_value(final_average(run, "student", column), fmt) for column, _, _, fmt in METRICS[1:]]
        )
    sft = sorted((r for r in study.sft if not math.isnan(final_average(r, "student", "ce"))), key=lambda r: r.seed or 0)
    for run in sft:  # the baseline without a teacher term (Tables 1-2): what KD must beat
        rows.append(
            ["SFT (no teacher term)", str(run.seed), _value(final_average(run, "student", "rouge_l"), ".2f")]
            + [_value(final_average(run, "student", column), fmt) for column, _, _, fmt in METRICS[1:]]
        )
    reference = runs[0]
    for model, label in (("teacher", "teacher"), ("student_init", "student (init)")):
        rows.append(
            [label, "", _value(final_average(reference, model, "rouge_l"), ".2f")]
            + [_value(final_average(reference, model, column), fmt) for column, _, _, fmt in METRICS[1:]]
        )
    lines.append(md_table(["arm", "seed", "ROUGE-L (± generation sd)"] + [m[1] for m in METRICS[1:]], rows))
    lines += ["", _paired_text(runs)]
    sft_text = _sft_text(runs, sft)
    if sft_text:
        lines += ["", sft_text]
    return "\n".join(lines)


def _sft_text(runs: list[Run], sft: list[Run]) -> str:
    """Plain KD (base, mean over its seeds) against the SFT baseline on held-out CE and KL: a
    distillation study whose plain KD does not beat SFT there shows no benefit of the teacher's
    distribution yet, whatever AdaKD's arms do against base."""
    base = [r for r in runs if component(r) == "base"]
    if not base or not sft:
        return ""
    parts, kd_better, sft_better, compared, seeds = [], [], [], [], 0
    for column, label in (("ce", "held-out CE"), ("kl_teacher", "KL(teacher ‖ student)")):
        kd = [final_average(r, "student", column) for r in base]
        alone = [final_average(r, "student", column) for r in sft]
        kd, alone = [x for x in kd if not math.isnan(x)], [x for x in alone if not math.isnan(x)]
        if not kd or not alone:
            continue
        seeds = max(seeds, len(kd))
        spread = 2 * statistics.stdev(kd) if len(kd) > 1 else 0.0
        kd_mean, sft_mean = statistics.fmean(kd), statistics.fmean(alone)
        compared.append(label)
        kd_better.append(kd_mean < sft_mean - spread)
        if sft_mean < kd_mean - spread:
            sft_better.append(label)
        parts.append(f"{label} {kd_mean:.3f} (plain KD, {seeds_text(len(kd))}) vs {sft_mean:.3f} (SFT, {len(alone)})")
    if not parts:
        return ""
    on = " and ".join(compared)
    if seeds < 2:
        verdict = (
            "plain KD has a single seed, so there is no seed spread to read the difference against: "
            "**not a finding** either way."
        )
    elif all(kd_better):
        verdict = f"plain KD is lower than SFT by more than twice its seed spread on {on}."
    else:
        why = (
            f"SFT is lower by more than twice plain KD's seed spread on {' and '.join(sft_better)}"
            if sft_better
            else f"it is not lower by more than twice its seed spread on {on}"
        )
        verdict = (
            f"**plain KD does not beat the SFT baseline** here ({why}), so with this base divergence "
            "the study does not show that the teacher's distribution helps beyond its reference "
            "replies; read the arms' differences to base with that in mind."
        )
    return "Against the SFT baseline: " + "; ".join(parts) + ": " + verdict


# the gate's metric labels (analysis.validity.METRICS) for the columns it judges
GATE_LABELS = {"rouge_l": "ROUGE-L", "ce": "held-out cross-entropy"}


def failing_metrics(base_runs: list[Run]) -> set[str]:
    """Eval columns on which base's seeds fail the validity gate: the metric cannot tell the
    teacher from a trained student there, so a difference between two trained arms on it is not
    a finding whatever its interval."""
    failed = {check.metric for check in study_gate(base_runs) if not check.passed}
    return {column for column, label in GATE_LABELS.items() if label in failed}


def paired_heldout(runs: list[Run], arm: str, column: str) -> tuple[float, float, int] | None:
    """(mean, 95 % half-width, seeds) of `column` of ablation arm `arm` minus base of the same
    training seed, over the seeds that have both; None below two pairs."""
    base = {r.seed: r for r in runs if component(r) == "base"}
    d = [
        final_average(r, "student", column) - final_average(base[r.seed], "student", column)
        for r in runs
        if component(r) == arm and r.seed in base
    ]
    d = [x for x in d if not math.isnan(x)]
    interval = paired_interval(d)
    return None if interval is None else (interval[0], interval[1], len(d))


def _paired_text(runs: list[Run]) -> str:
    base = {r.seed: r for r in runs if component(r) == "base"}
    unranked = failing_metrics(list(base.values()))
    rows = []
    for arm in ARM_ORDER[1:]:
        pairs = [(r, base[r.seed]) for r in runs if component(r) == arm and r.seed in base]
        if not pairs:
            continue
        cells = [arm, str(len(pairs))]
        for column, _, higher, fmt in METRICS:
            d = [final_average(a, "student", column) - final_average(b, "student", column) for a, b in pairs]
            d = [x for x in d if not math.isnan(x)]
            interval = paired_interval(d)
            if interval is None:
                cells.append(f"{format(d[0], '+' + fmt)} (one seed)" if d else "–")
                continue
            mean, half = interval
            better = mean > half if higher else mean < -half
            worse = mean < -half if higher else mean > half
            verdict = "better" if better else "worse" if worse else "no difference shown"
            if column in unranked:
                verdict = "not a finding: the gate fails on this metric"
            cells.append(f"{format(mean, '+' + fmt)} ± {format(half, fmt)} ({verdict})")
        rows.append(cells)
    if not rows:
        return "No arm shares a training seed with a base run yet, so no paired difference."
    return "\n".join(
        [
            "Each arm minus base of the same training seed, mean over seeds ± the 95 % t interval "
            '("better"/"worse" only when the interval excludes 0 and base passes the validity gate on '
            "that metric; higher ROUGE-L is better, lower CE, KL and degenerate share are better):",
            "",
            md_table(["arm", "seeds"] + [m[1] for m in METRICS], rows),
        ]
    )
