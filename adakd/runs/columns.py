"""The columns of a run directory's tables (docs/contracts.md, format 1) and the kind of each.

One place for the schema: ``adakd.training.probes`` writes ``tokens.parquet`` and ``gradients.parquet``
with these columns, and ``analysis.readers`` reads every table back against them. A kind is
"int", "float", "bool" or "str"; ``PANDAS_DTYPES`` gives the dtype each is written with.
"""

from __future__ import annotations

# tokens.parquet: one row per valid token of the fixed probe set at a probe step.
TOKEN_COLUMNS = {
    "step": "int",
    "example": "int",
    "position": "int",
    "token_index": "int",
    "token_id": "int",
    "token_text": "str",
    "difficulty": "float",
    "selected": "bool",
    "group": "str",
    "tau": "float",
    "tau_all": "float",
    "hard": "bool",
    "entropy_student": "float",
    "entropy_student_idts": "float",
    "entropy_student_tau": "float",
    "entropy_teacher": "float",
    "p_label_teacher": "float",
    "p_label_student": "float",
    "top1_teacher": "str",
    "top1_student": "str",
    "ratio": "float",
}
# gradients.parquet: one row per (probe step, split, group) of the gradient-alignment probe.
GRADIENT_COLUMNS = {
    "step": "int",
    "split": "str",
    "ratio": "float",
    "group": "str",
    "n_tokens": "int",
    "cos_sft": "float",
    "cos_total": "float",
    "norm_share": "float",
    "grad_norm": "float",
}
# metrics.jsonl: one record per optimiser step (counts are floats: summed across ranks).
METRIC_COLUMNS = {
    "step": "int",
    "loss": "float",
    "kd": "float",
    "ce": "float",
    "ratio": "float",
    "next_ratio": "float",
    "ema": "float",
    "ref": "float",
    "mean_tau": "float",
    "n_valid": "float",
    "n_selected": "float",
    "lr": "float",
    "grad_norm": "float",
    "tokens_per_s": "float",
    "step_seconds": "float",
    "ctkd_tau": "float",
    "ctkd_lambda": "float",  # CTKD runs only (NaN elsewhere)
}
EVENT_COLUMNS = {"step": "int", "kind": "str", "message": "str"}
EVAL_COLUMNS = {
    "step": "int",
    "model": "str",
    "dataset": "str",
    "rouge_l": "float",
    "n": "float",
    # the evaluation protocol's other numbers (NaN in records written before it)
    "rouge_l_spread": "float",
    "degenerate": "float",
    "ce": "float",
    "kl_teacher": "float",
}
EVAL_EXTRA = ("rouge_l_spread", "degenerate", "ce", "kl_teacher")  # per-dataset dicts, with "<name>_avg" means

# Columns added to format 1 after its first runs: a file without them is older, not damaged
# (readers fill them with NA and say nothing).
LATER_COLUMNS = frozenset({"entropy_student_tau"}) | frozenset(EVAL_EXTRA)

PANDAS_DTYPES = {"int": "int64", "float": "float64", "bool": "bool", "str": "str"}
