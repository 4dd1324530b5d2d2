"""The replies a run's evaluations stored, and whether they are empty.

eval.jsonl keeps, per evaluation and data set, the first few prompts with the reference, the
model's reply and its ROUGE-L (adakd.evaluation.evaluate). Reading them shows what a ROUGE-L number
measures; a student whose replies are mostly empty (it emits the end token first) scores near
0 whatever the method, and its ROUGE-L difference to another run says nothing about the method.

    last_eval_record(run, model="student")   the record of the model's last evaluation (or None)
    replies_frame(run, model="student")      dataset, instruction, reference, reply, rouge_l
    empty_reply_share(frame)                 share of replies that are blank (NaN: none stored)
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.runs import Run

REPLY_COLUMNS = ("dataset", "instruction", "reference", "reply", "rouge_l")
# from this share of blank stored replies on, a student's ROUGE-L measures the blank replies
EMPTY_REPLY_LIMIT = 0.5


def last_eval_record(run: Run, model: str = "student") -> dict | None:
    """The eval.jsonl record of `model`'s evaluation at the highest step (None when none)."""
    records = [r for r in run.eval_records if r.get("model") == model]
    return max(records, key=lambda r: r.get("step", 0)) if records else None


def replies_frame(run: Run, model: str = "student") -> pd.DataFrame:
    """One row per stored prompt of `model`'s last evaluation (empty frame when none)."""
    record = last_eval_record(run, model) or {}
    samples = record["samples"] if isinstance(record.get("samples"), dict) else {}
    rows = [
        {
            "dataset": str(dataset),
            "instruction": str(s.get("instruction") or ""),
            "reference": str(s.get("reference") or ""),
            "reply": str(s.get("response") or ""),
            "rouge_l": float(s["rouge_l"]) if isinstance(s.get("rouge_l"), (int, float)) else math.nan,
        }
        for dataset, items in samples.items()
        if isinstance(items, list)
        for s in items
        if isinstance(s, dict)
    ]
    return pd.DataFrame(rows, columns=list(REPLY_COLUMNS))


def empty_reply_share(frame: pd.DataFrame) -> float:
    """Share of blank replies (white space only counts as blank); NaN when none is stored."""
    if frame.empty:
        return math.nan
    return float((frame["reply"].str.strip() == "").mean())
