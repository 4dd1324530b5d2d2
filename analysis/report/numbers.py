"""Numbers per run (or per group of runs) that the report's tables and readings quote."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from adakd.runs.timestamps import parse_utc
from analysis.figures import group_difficulty_frame
from analysis.replies import last_eval_record, replies_frame
from analysis.report.settings import WINDOW
from analysis.runs import Run


def window_mean(run: Run, column: str, where: str, window: int = WINDOW) -> float:
    """Mean of metrics column over the first or last `window` logged steps (NaN if none)."""
    values = run.metrics[["step", column]].dropna().sort_values("step")[column]
    part = values.head(window) if where == "first" else values.tail(window)
    return float(part.mean()) if len(part) else math.nan


def paired_ce_difference(run: Run, base: Run, window: int = WINDOW) -> float:
    """Mean over the last `window` steps of (CE of `run` − CE of `base`) at the same step.

    Runs of the same seed draw the same batches (the data order is seeded), so the step-wise
    difference removes the batch-to-batch spread of CE. NaN when the batches differ (n_valid
    disagrees at a shared step) or nothing is shared."""
    d = _paired_ce(run, base, window)
    return float(d.mean()) if len(d) else math.nan


def paired_ce_se(run: Run, base: Run, window: int = WINDOW) -> float:
    """Standard error of `paired_ce_difference`: sd(step-wise differences, ddof 1) / √steps.
    Neighbouring steps share a model, so this understates the uncertainty."""
    d = _paired_ce(run, base, window)
    return float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) >= 2 else math.nan


def _paired_ce(run: Run, base: Run, window: int) -> pd.Series:
    a = run.metrics[["step", "ce", "n_valid"]].dropna()
    b = base.metrics[["step", "ce", "n_valid"]].dropna()
    both = a.merge(b, on="step", suffixes=("", "_base")).sort_values("step").tail(window)
    if both.empty or not np.array_equal(both["n_valid"].to_numpy(), both["n_valid_base"].to_numpy()):
        return pd.Series(dtype=float)
    return both["ce"] - both["ce_base"]


def probe_summary(run: Run) -> dict:
    """Fixed probe set: mean difficulty, student and teacher CE on the label (−log p) at the
    first and last probe step."""
    tokens = run.tokens
    if tokens.empty:
        return {}
    steps = run.probe_steps
    out: dict[str, float] = {
        "first_step": steps[0],
        "last_step": steps[-1],
        "n_tokens": int((tokens["step"] == steps[-1]).sum()),
    }
    for name, step in (("first", steps[0]), ("last", steps[-1])):
        rows = tokens[tokens["step"] == step]
        out[f"difficulty_{name}"] = float(rows["difficulty"].mean())
        out[f"ce_student_{name}"] = float(-np.log(rows["p_label_student"].clip(lower=1e-30)).mean())
        out[f"ce_teacher_{name}"] = float(-np.log(rows["p_label_teacher"].clip(lower=1e-30)).mean())
    return out


def group_medians(run: Run) -> dict[str, tuple[float, float]]:
    """{group: (median difficulty at the first probe, at the last)} at the paper's split
    (r = 0.5: 25 % hard, 25 % mid, 50 % easy, recomputed at each probe step)."""
    frame = group_difficulty_frame(run, split="paper")
    if frame.empty:
        return {}
    first, last = frame["step"].min(), frame["step"].max()
    out = {}
    for group in ("hard", "mid", "easy"):
        a = frame[(frame["group"] == group) & (frame["step"] == first)]["median"]
        b = frame[(frame["group"] == group) & (frame["step"] == last)]["median"]
        if len(a) and len(b):
            out[group] = (float(a.iloc[0]), float(b.iloc[0]))
    return out


def final_rouge(run: Run, model: str = "student") -> float:
    rows = run.final_eval(model)
    scores = rows[rows["dataset"] == "average"]["rouge_l"]
    return float(scores.iloc[0]) if len(scores) else math.nan


def ratio_summary(run: Run) -> dict:
    m = run.metrics.dropna(subset=["ratio"])
    events = run.events
    changes = int((events["kind"] == "ratio_change").sum()) if not events.empty else 0
    if m.empty:
        return {"first": math.nan, "last": math.nan, "min": math.nan, "changes": changes, "rises": 0}
    series = np.append(m["ratio"].to_numpy(dtype=float), float(m["next_ratio"].fillna(m["ratio"]).iloc[-1]))
    return {
        "first": float(series[0]),
        "last": float(series[-1]),
        "min": float(series.min()),
        "changes": changes,
        "rises": int((np.diff(series) > 1e-12).sum()),
    }


def nan_mean(values) -> float:
    """Mean of the finite values; NaN (printed as "–") when there is none, without numpy's
    empty-slice warning."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def last_student_eval(run: Run) -> dict | None:
    """The eval.jsonl record of the final student's evaluation (None when there is none)."""
    return last_eval_record(run, "student")


def final_replies(run: Run) -> list[str]:
    """The final student's stored replies (eval.jsonl keeps the first few per data set)."""
    return replies_frame(run, "student")["reply"].tolist()


def sample_noise(runs: list[Run]) -> dict:
    """Rough sampling noise of a 24-prompt ROUGE-L mean from the per-prompt scores stored in
    eval.jsonl (up to 5 samples per record) of the final student evaluations: pooled standard
    deviation of per-prompt ROUGE-L around each record's mean, standard error = sd / √n."""
    residuals, n_prompts = [], []
    for run in runs:
        last = last_student_eval(run)
        if last is None:
            continue
        for dataset, samples in (last.get("samples") or {}).items():
            scores = [float(s["rouge_l"]) for s in samples if isinstance(s.get("rouge_l"), (int, float))]
            if len(scores) >= 2:
                residuals.extend(np.asarray(scores) - np.mean(scores))
                n_prompts.append(int((last.get("n") or {}).get(dataset, len(scores))))
    if len(residuals) < 2 or not n_prompts:
        return {}
    k = len(residuals)
    groups = len(n_prompts)
    sd = float(np.sqrt(np.sum(np.square(residuals)) / max(1, k - groups)))
    n = int(np.median(n_prompts))
    se = sd / math.sqrt(n)
    return {"sd": sd, "samples": k, "records": groups, "n": n, "se": se, "se_diff": math.sqrt(2) * se}


def wall_minutes(run: Run) -> float:
    try:
        start = parse_utc(str(run.meta["started_at"]))
        end = parse_utc(str(run.status["updated_at"]))
    except (KeyError, ValueError):
        return math.nan
    return (end - start).total_seconds() / 60.0


def grouped_by_side(readings: list[tuple[float, float, str]], *, lower: str, within: str, higher: str) -> list[str]:
    """Sort (difference d, noise limit, text) readings into d < −limit, |d| ≤ limit and
    d > limit, and name each non-empty group after its heading, in that order."""
    groups: dict[str, list[str]] = {"lower": [], "within": [], "higher": []}
    for d, limit, text in readings:
        groups["lower" if d < -limit else "higher" if d > limit else "within"].append(text)
    headings = {"lower": lower, "within": within, "higher": higher}
    return [f"{headings[side]} {', '.join(texts)}" for side, texts in groups.items() if texts]
