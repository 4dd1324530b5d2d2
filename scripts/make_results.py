"""Build docs/results.md and docs/figures/ from the finished runs under sample_runs/.

    .venv/bin/python scripts/make_results.py                 # tables, figures, report
    .venv/bin/python scripts/make_results.py --no-figures    # tables and report only (no browser)

Every number in docs/results.md is computed here from the run directories (config.json,
metrics.jsonl, tokens.parquet, gradients.parquet, eval.jsonl) with the project's own analysis
code (analysis.runs, analysis.tables, analysis.figures); only the paper's numbers (PAPER_*,
from docs/METHOD.md) are constants. Runs that are not finished are left out and listed as
missing, so the report can be regenerated at any point while `scripts/make_sample_runs.sh`
is still producing the study.

Pure parts for tests: `collect_runs(root)`, `Study(runs)`, `build_report(study, ...)`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: make `analysis` and `adakd` importable
    sys.path.insert(0, str(REPO_ROOT))

from analysis.figures import (c_sweep_figure, c_sweep_frame, difficulty_heatmap_figure,  # noqa: E402
                              difficulty_heatmap_frame, gradient_cosine_figure, gradient_frame,
                              gradient_share_figure, group_difficulty_figure,
                              group_difficulty_frame, histogram_frame, histogram_grid_figure,
                              loss_curves_figure, loss_curves_frame, loss_ratio_figure,
                              loss_ratio_frame)
from analysis.runs import Run, find_runs, load_runs, method_label  # noqa: E402
from analysis.tables import COMPONENTS, ablation_table, results_frame  # noqa: E402

log = logging.getLogger("make_results")

# The paper's numbers (docs/METHOD.md; Qwen2-7B -> Qwen2-1.5B, ROUGE-L x100).
PAPER_TABLE1_RKL = (31.70, 32.97)  # reverse-KL KD, plain -> with AdaKD (five-set average)
PAPER_TABLE2 = {"base": 37.03, "+IDTS": 38.55, "+LATF": 37.07,
                "full (AdaKD)": 39.01}  # Dolly / S-NI / UnNI average

WEAK_TEACHER_ROUGE = 10.0  # below this the teacher's own ROUGE-L makes the metric a weak signal
NOISE_FLOOR = 2.0  # ROUGE-L points: the least difference read as a signal (seed spread unknown)
WINDOW = 20  # steps averaged for "first" / "last" losses (batch 4: single steps are noisy)
FIGURE_WIDTH = 900
PNG_SCALE = 1.5
REGENERATE = "bash scripts/make_sample_runs.sh"

# The studies of scripts/make_sample_runs.sh (sweep folder, planned runs, command), in its
# priority order.
PLANNED = [
    ("ablation", 4, "bash scripts/make_sample_runs.sh ablation",
     "component ablation, seed 0 (Table 2)"),
    ("c-sweep", 4, "bash scripts/make_sample_runs.sh c-sweep",
     "IDTS strength c = 0.1, 0.3, 0.7, 0.9 (Fig. 3c-d; c = 0.5 is ablation/full)"),
    ("schedule-fixed", 1, "bash scripts/make_sample_runs.sh schedules",
     "LATF replaced by a fixed r = 0.75 (Table 4, Fig. 3b)"),
    ("schedule-cosine", 1, "bash scripts/make_sample_runs.sh schedules",
     "LATF replaced by a cosine r 1.0 -> 0.75 (Table 4, Fig. 3b)"),
    ("divergences", 8, "bash scripts/make_sample_runs.sh divergences",
     "fkl, jsd, srkl, ab, each plain and with AdaKD (Table 1)"),
    ("ablation-seeds", 8, "bash scripts/make_sample_runs.sh seeds",
     "component ablation, seeds 1 and 2 (seed spread of Table 2)"),
    ("table1", 4, "bash scripts/make_sample_runs.sh table1",
     "GKD and DistiLLM data regimes, plain and with AdaKD (rest of Table 1)"),
]


# ---------------------------------------------------------------- loading and grouping

def collect_runs(root: str | os.PathLike) -> list[Run]:
    """The finished runs under `root` (sweep folders one level down), sorted by path."""
    runs = load_runs(find_runs([Path(root)]))
    for run in runs:
        for problem in run.problems:
            log.warning("%s: %s", run.name, problem)
    return [run for run in runs if run.state == "finished"]


def _cfg(run: Run, key: str, default=None):
    return run.config.get(key, default)


def _plain_setting(run: Run | dict) -> bool:
    """Ground-truth data, Hellinger indicator, τ_base 1, pure KD: the study's common settings
    (`run` a Run or a RunConfig dict)."""
    config = run if isinstance(run, dict) else run.config
    return (config.get("regime", "ground_truth") == "ground_truth"
            and config.get("indicator", "hellinger") == "hellinger"
            and float(config.get("base_temperature", 1.0)) == 1.0
            and float(config.get("kd_ratio", 1.0)) == 1.0)


def _c(run: Run) -> float:
    return float(_cfg(run, "idts_c", 0.5))


def component(run: Run) -> str | None:
    """"base" / "+IDTS" / "+LATF" / "full (AdaKD)" for the ablation arms, else None."""
    return COMPONENTS.get((_cfg(run, "latf", "adaptive"), _cfg(run, "idts", "on")))


@dataclass
class Study:
    """The finished runs, grouped by the paper's tables and figures."""

    runs: list[Run]

    def _rkl(self) -> list[Run]:
        return [r for r in self.runs if _cfg(r, "divergence") == "rkl" and _plain_setting(r)]

    @property
    def ablation(self) -> list[Run]:
        """Reverse-KL base / +IDTS / +LATF / full at c = 0.5, every seed."""
        return [r for r in self._rkl() if component(r) is not None
                and (_cfg(r, "idts") == "off" or _c(r) == 0.5)]

    def arm(self, name: str, seed: int | None = None) -> Run | None:
        """The ablation run of component `name` with the lowest seed (or the given seed)."""
        runs = sorted((r for r in self.ablation if component(r) == name
                       and (seed is None or r.seed == seed)), key=lambda r: (r.seed or 0))
        return runs[0] if runs else None

    @property
    def full(self) -> Run | None:
        return self.arm("full (AdaKD)")

    @property
    def c_sweep(self) -> list[Run]:
        """Runs with IDTS on and LATF adaptive (reverse KL), any c: Fig. 3c-d."""
        return [r for r in self._rkl() if _cfg(r, "latf") == "adaptive" and _cfg(r, "idts") == "on"]

    @property
    def schedules(self) -> list[Run]:
        """IDTS on at c = 0.5 with LATF adaptive, fixed, linear or cosine r: Table 4."""
        return [r for r in self._rkl() if _cfg(r, "idts") == "on" and _c(r) == 0.5
                and _cfg(r, "latf") in ("adaptive", "fixed", "linear", "cosine")]

    @property
    def temperatures(self) -> list[Run]:
        """LATF adaptive with fixed τ (IDTS off), IDTS or inverse IDTS at c = 0.5: Table 5."""
        return [r for r in self._rkl() if _cfg(r, "latf") == "adaptive"
                and (_cfg(r, "idts") == "off" or _c(r) == 0.5)]

    @property
    def divergences(self) -> list[Run]:
        """Every base divergence and data regime, plain (base) and with AdaKD (full, c = 0.5):
        Table 1."""
        return [r for r in self.runs if _plain_setting({**r.config, "regime": "ground_truth"})
                and component(r) in ("base", "full (AdaKD)")
                and (_cfg(r, "idts") == "off" or _c(r) == 0.5)]


# ---------------------------------------------------------------- numbers per run

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
    out = {"first_step": steps[0], "last_step": steps[-1], "n_tokens": int((tokens["step"] == steps[-1]).sum())}
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
    rows = rows[rows["dataset"] == "average"]["rouge_l"]
    return float(rows.iloc[0]) if len(rows) else math.nan


def ratio_summary(run: Run) -> dict:
    m = run.metrics.dropna(subset=["ratio"])
    events = run.events
    changes = int((events["kind"] == "ratio_change").sum()) if not events.empty else 0
    if m.empty:
        return {"first": math.nan, "last": math.nan, "min": math.nan, "changes": changes,
                "rises": 0}
    series = np.append(m["ratio"].to_numpy(dtype=float),
                       float(m["next_ratio"].fillna(m["ratio"]).iloc[-1]))
    return {"first": float(series[0]), "last": float(series[-1]), "min": float(series.min()),
            "changes": changes, "rises": int((np.diff(series) > 1e-12).sum())}


def sample_noise(runs: list[Run]) -> dict:
    """Rough sampling noise of a 24-prompt ROUGE-L mean from the per-prompt scores stored in
    eval.jsonl (up to 5 samples per record) of the final student evaluations: pooled standard
    deviation of per-prompt ROUGE-L around each record's mean, standard error = sd / √n."""
    residuals, n_prompts = [], []
    for run in runs:
        records = [r for r in run.eval_records if r.get("model") == "student"]
        if not records:
            continue
        last = max(records, key=lambda r: r.get("step", 0))
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
        start = datetime.fromisoformat(str(run.meta["started_at"]).replace("Z", "+00:00"))
        end = datetime.fromisoformat(str(run.status["updated_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return math.nan
    return (end - start).total_seconds() / 60.0


# ---------------------------------------------------------------- markdown helpers

def fmt(value, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def md_table(header: list[str], rows: list[list]) -> str:
    """A GitHub markdown table (cells as given, | escaped)."""
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    if not rows:
        return "*(no finished run for this table yet)*"
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def compare(a: float, b: float, what: str, unit: str = "", digits: int = 2) -> str:
    """"<what> is lower/higher than ... by X" (or "equal") for a − b."""
    if math.isnan(a) or math.isnan(b):
        return f"{what}: not available"
    d = a - b
    if round(d, digits) == 0:
        return f"{what} is equal to {digits} decimals"
    return f"{what} is {'lower' if d < 0 else 'higher'} by {abs(d):.{digits}f}{unit}"


# ---------------------------------------------------------------- the report's sections

def decoding_text(run: Run) -> str:
    """"sampled (temperature 1, top-p 1, ≤ 48 new tokens, seed 0)" from the eval records."""
    decoding = next((r.get("decoding") for r in run.eval_records if r.get("decoding")), None)
    if not decoding:
        return "generated"
    if decoding.get("greedy"):
        return f"greedy (≤ {decoding.get('max_new_tokens')} new tokens)"
    return (f"sampled (temperature {decoding.get('temperature'):g}, top-p {decoding.get('top_p'):g}, "
            f"≤ {decoding.get('max_new_tokens')} new tokens, seed {decoding.get('seed')})")


def setup_section(study: Study) -> str:
    runs = study.runs
    ref = study.full or (study.ablation[0] if study.ablation else runs[0])
    c, meta = ref.config, ref.meta
    params = meta.get("num_parameters", {})
    machine, versions = meta.get("machine", {}), meta.get("versions", {})
    walls = [wall_minutes(r) for r in runs]
    steps = pd.concat([r.metrics["step_seconds"] for r in runs]).dropna()
    layers = c.get("student_layers") or []
    lines = [
        "## Setup",
        "",
        f"- **Teacher**: `{c.get('teacher')}` ({params.get('teacher', 0) / 1e6:.1f} M parameters)"
        + (", the offline default (SmolLM2-135M-Instruct)." if c.get("teacher") == "smollm2-135m-instruct"
           else "."),
        (f"- **Student**: `subset` = teacher layers {layers} ({len(layers)} of the teacher's layers, "
         f"{params.get('student', 0) / 1e6:.1f} M parameters), initialised from the teacher's weights."
         if c.get("student") == "subset" else
         f"- **Student**: `{c.get('student')}` ({params.get('student', 0) / 1e6:.1f} M parameters)."),
        f"- **Data**: `{c.get('data')}` (train/val/test split of the corpus); prompts ≤ "
        f"{c.get('max_prompt_length')} tokens, sequences ≤ {c.get('max_length')} tokens.",
        f"- **Training**: {c.get('max_steps')} steps of batch {c.get('batch_size')} "
        f"(grad accumulation {c.get('grad_accum')}), {c.get('optimizer')} lr {c.get('lr')}, "
        f"{c.get('lr_schedule')} schedule (warm-up ratio {c.get('warmup_ratio')}); base divergence "
        f"`{c.get('divergence')}`; LATF β={c.get('latf_beta')}, ε={c.get('latf_eps')}, "
        f"δ={c.get('latf_delta')}; IDTS c={c.get('idts_c')} unless stated.",
        f"- **Instrumentation**: probes every {c.get('probe_interval')} steps on "
        f"{c.get('probe_examples')} fixed held-out examples "
        f"({probe_summary(ref).get('n_tokens', 0)} response tokens); gradients on "
        f"{c.get('gradient_batch_size')} examples.",
        f"- **Evaluation**: ROUGE-L (F, ×100) of {decoding_text(ref)} responses on "
        f"{c.get('eval_examples')} held-out prompts, for the teacher, the initial student and "
        "the final student.",
        f"- **Hardware**: {machine.get('cpu_count')} CPU cores, "
        f"{'GPU ' + str(machine['gpu']) if machine.get('gpu') else 'no GPU'} "
        f"(`{machine.get('platform')}`), device `{meta.get('device')}`, {meta.get('dtype')}; "
        f"Python {versions.get('python')}, torch {versions.get('torch')}, transformers "
        f"{versions.get('transformers')}, adakd {versions.get('adakd')}.",
        f"- **Wall time**: {fmt(np.nanmin(walls), 1)}–{fmt(np.nanmax(walls), 1)} min per run, "
        f"evaluation and probes included; the fastest optimiser step took "
        f"{fmt(float(steps.min()), 2)} s, the median {fmt(float(steps.median()), 2)} s."
        + (" The machine was shared with other jobs while these ran, so wall times are "
           "inflated by contention and say nothing about AdaKD's overhead."
           if float(steps.median()) > 2 * float(steps.min()) else ""),
        "",
        f"Regenerate every run with `{REGENERATE}` (the same seeds give the same numbers on the "
        "same machine), then this page and its figures with "
        "`.venv/bin/python scripts/make_results.py`. Each run's exact command, package versions "
        "and machine are in its `config.json`.",
    ]
    return "\n".join(lines)


def shortest_reference(runs: list[Run]) -> tuple[str, str] | None:
    """(instruction, reference) of the shortest stored reference of a teacher evaluation."""
    pairs = [(s.get("instruction", ""), s.get("reference", ""))
             for run in runs for r in run.eval_records if r.get("model") == "teacher"
             for samples in (r.get("samples") or {}).values() for s in samples]
    pairs = [p for p in pairs if p[0] and p[1]]
    return min(pairs, key=lambda p: len(p[1])) if pairs else None


def noise_section(study: Study) -> tuple[str, float]:
    """The noise paragraph and the ROUGE-L difference below which we call a result noise."""
    noise = sample_noise(study.ablation or study.runs)
    seeds = sorted({r.seed for r in study.ablation if r.seed is not None})
    teacher = [final_rouge(r, "teacher") for r in study.runs]
    teacher = [t for t in teacher if not math.isnan(t)]
    text = ["## How much is noise", ""]
    if noise:
        threshold = max(NOISE_FLOOR, 2 * noise["se_diff"])  # 2 SE, with a floor: seeds not counted
        text.append(
            f"Each arm is scored on {noise['n']} prompts with sampled decoding. The per-prompt "
            f"ROUGE-L of the final students (the {noise['samples']} per-prompt scores stored in "
            f"{noise['records']} eval.jsonl records) has a pooled standard deviation of "
            f"{fmt(noise['sd'])}, so one arm's mean has a standard error of about "
            f"{fmt(noise['se'])} and a difference of two arms about {fmt(noise['se_diff'])}. That "
            "counts only which prompts were drawn and how they were sampled; the spread from "
            "training seeds is "
            + ("unknown here: every arm has one seed" if len(seeds) <= 1
               else f"measured over seeds {seeds} in the tables (± = std over seeds)")
            + ". The stored scores cover only the first few prompts of each evaluation, so this "
            "is a rough estimate. We read ROUGE-L differences below "
            f"{fmt(threshold, 1)} points (twice the standard error of a difference, and at least "
            f"{fmt(NOISE_FLOOR, 0)} points because the seed spread is not counted) as noise.")
    else:
        threshold = NOISE_FLOOR
        text.append("The eval records store no per-prompt scores, so the sampling noise is unknown; "
                    f"we read ROUGE-L differences below {fmt(NOISE_FLOOR, 0)} points as noise.")
    if teacher and float(np.mean(teacher)) >= WEAK_TEACHER_ROUGE:
        text += ["", f"The teacher itself scores {fmt(float(np.mean(teacher)))} ROUGE-L on these "
                 "prompts."]
    elif teacher:
        example = shortest_reference(study.runs)
        example = f' (e.g. "{example[1]}" to "{example[0]}")' if example else ""
        text += ["", f"The teacher itself scores {fmt(float(np.mean(teacher)))} ROUGE-L on these "
                 f"prompts: the references are short and idiosyncratic{example}, so even a fluent "
                 "answer shares few words with them. ROUGE-L is a weak signal at this scale; the "
                 "loss-level numbers below are the stronger evidence."]
    return "\n".join(text), threshold


def table2_section(study: Study, threshold: float) -> str:
    runs = study.ablation
    out = ["## Table 2 shape: component ablation (reverse KL base)", ""]
    if not runs:
        return "\n".join(out + ["No ablation run has finished yet."])
    table = ablation_table(runs)
    numbers = results_frame(runs, references=False)
    avg = numbers[numbers["dataset"] == "average"].set_index("method")
    rows = []
    for _, row in table.iterrows():
        comp = row["component"]
        paper = PAPER_TABLE2.get(comp)
        rows.append([comp, row["method"], row["average"], row["n_seeds"], row["Δ average"] or "–",
                     fmt(paper), fmt(paper - PAPER_TABLE2["base"], signed=True) if paper else "–"])
    refs = results_frame(study.ablation, references=True)
    refs = refs[(refs["dataset"] == "average") & refs["method"].isin(["teacher", "student (init)"])]
    for _, ref in refs.iterrows():
        rows.append([ref["method"], "", fmt(ref["mean"]), int(ref["n_seeds"]), "", "", ""])
    out.append(md_table(["component", "method", "ROUGE-L (ours)", "seeds", "Δ vs base (ours)",
                         "ROUGE-L (paper)", "Δ vs base (paper)"], rows))
    c = runs[0].config
    out += ["", f"Ours: `{c.get('teacher')}` → `{c.get('student')}` student, `{c.get('data')}` data, "
            f"{c.get('eval_examples')} prompts. Paper: Qwen2-7B → Qwen2-1.5B, average of Dolly / "
            "S-NI / UnNI."]
    base = avg["mean"].get(method_label({"divergence": "rkl", "latf": "off", "idts": "off"}))
    if base is not None:
        readings = []
        for comp in ("+IDTS", "+LATF", "full (AdaKD)"):
            arm = study.arm(comp)
            if arm is None:
                continue
            value = avg["mean"].get(arm.label)
            d = value - base
            verdict = "within noise" if abs(d) < threshold else ("above" if d > 0 else "below")
            readings.append(f"{comp} {fmt(d, signed=True)} ({verdict})")
        paper_order = "the paper's ordering (full > +IDTS > +LATF ≈ base)"
        out += ["", f"Reading: against base, {', '.join(readings)}. "
                f"With the noise estimate above, this ablation can neither confirm nor refute "
                f"{paper_order} unless a difference exceeds {fmt(threshold, 1)} points."]
    return "\n".join(out)


def loss_section(study: Study) -> str:
    runs = sorted(study.ablation, key=lambda r: (COMPONENTS_ORDER.get(component(r), 9), r.seed or 0))
    out = ["## Loss-level evidence (ablation arms)", ""]
    if not runs:
        return "\n".join(out + ["No ablation run has finished yet."])
    base_by_seed = {r.seed: r for r in runs if component(r) == "base"}
    rows = []
    for run in runs:
        p = probe_summary(run)
        base = base_by_seed.get(run.seed)
        paired = paired_ce_difference(run, base) if base is not None and base is not run else math.nan
        paired_se = paired_ce_se(run, base) if base is not None and base is not run else math.nan
        rows.append([
            component(run), run.seed, fmt(window_mean(run, "kd", "first"), 3), fmt(window_mean(run, "kd", "last"), 3),
            fmt(window_mean(run, "ce", "first"), 3), fmt(window_mean(run, "ce", "last"), 3),
            "–" if base is run else f"{fmt(paired, 3, signed=True)} ± {fmt(paired_se, 3)}",
            f"{fmt(p.get('difficulty_first', math.nan), 3)} → {fmt(p.get('difficulty_last', math.nan), 3)}",
            f"{fmt(p.get('ce_student_first', math.nan), 2)} → {fmt(p.get('ce_student_last', math.nan), 2)}",
        ])
    out.append(md_table(
        ["component", "seed", f"KD objective, steps 1–{WINDOW}", f"KD objective, last {WINDOW}",
         f"CE on labels, steps 1–{WINDOW}", f"CE on labels, last {WINDOW}",
         f"paired ΔCE vs base, last {WINDOW} (± SE)", "probe difficulty first → last probe",
         "probe CE (student) first → last"], rows))
    teacher_ce = [probe_summary(r).get("ce_teacher_last", math.nan) for r in runs]
    out += ["",
            f"Losses in nats per token, averaged over {WINDOW} steps (batch "
            f"{runs[0].config.get('batch_size')} gives {tokens_range(runs)} response tokens per "
            "step). The KD objective is what each arm optimises: plain reverse KL over "
            "all tokens for base, but only the LATF-selected (hardest) tokens and/or per-token "
            "temperatures for the others, so it is not comparable across arms. CE on labels (the "
            "student's cross-entropy on every response token of the training batch) and the probe "
            "columns (the same fixed held-out tokens for every arm: mean Hellinger difficulty at "
            "τ = 1 and the student's −log p(label)) are comparable. Runs of the same seed see the "
            "same batches, so the paired ΔCE removes the batch-to-batch spread; its ± is the "
            "standard error over those steps, which understates the uncertainty (neighbouring "
            "steps share a model, and the seed spread is not in it). The teacher's "
            f"probe CE is {fmt(float(np.nanmean(teacher_ce)), 2)} nats."]
    base, full = study.arm("base"), study.full

    def span(key: str, digits: int) -> str:
        values = [probe_summary(r).get(key, math.nan) for r in runs]
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        return fmt(low, digits) if round(low, digits) == round(high, digits) else \
            f"{fmt(low, digits)}–{fmt(high, digits)}"

    if base is not None and full is not None:
        pb, pf = probe_summary(base), probe_summary(full)
        out += ["", "Reading: "
                + compare(paired_ce_difference(full, base), 0.0,
                          f"AdaKD's CE on labels over the last {WINDOW} steps (paired with base)", " nats", 3)
                + "; " + compare(pf["difficulty_last"], pb["difficulty_last"],
                                 "its mean probe difficulty at the last probe (vs base)", "", 3)
                + "; " + compare(pf["ce_student_last"], pb["ce_student_last"],
                                 "its probe CE (vs base)", " nats", 2)
                + f". After {int(base.config.get('max_steps', 0))} steps the arms' mean probe "
                f"difficulty is {span('difficulty_last', 3)} (from {fmt(pb['difficulty_first'], 3)} "
                f"before training) and their probe CE {span('ce_student_last', 2)} nats (from "
                f"{fmt(pb['ce_student_first'], 2)}), against the teacher's "
                f"{fmt(pb['ce_teacher_last'], 2)} nats."]
    # difficulty per group, paper split
    rows = []
    for run in runs:
        med = group_medians(run)
        if med:
            rows.append([component(run), run.seed] + [
                f"{fmt(med[g][0], 3)} → {fmt(med[g][1], 3)} ({fmt(med[g][1] - med[g][0], 3, signed=True)})"
                if g in med else "–" for g in ("hard", "mid", "easy")])
    if rows:
        steps = runs[0].probe_steps
        out += ["", f"Median probe difficulty per group, step {steps[0]} → step {steps[-1]} "
                "(paper split at r = 0.5: hardest 25 % / next 25 % / easiest 50 % of the probe "
                "tokens, recomputed at each probe):", "",
                md_table(["component", "seed", "hard", "mid", "easy"], rows)]
    return "\n".join(out)


def tokens_range(runs: list[Run]) -> str:
    n = pd.concat([r.metrics["n_valid"] for r in runs]).dropna()
    return f"{int(n.min())}–{int(n.max())}" if len(n) else "an unknown number of"


METRIC_NAMES = {"kd": "KD objective", "ce": "CE on labels"}
COMPONENTS_ORDER = {"base": 0, "+IDTS": 1, "+LATF": 2, "full (AdaKD)": 3}


def _rows_with_loss(runs: list[Run], key) -> list[list]:
    """Rows: key(run), method, ROUGE-L, seeds, CE last WINDOW, probe difficulty last — averaged
    over runs sharing the key."""
    groups: dict = {}
    for run in runs:
        groups.setdefault(key(run), []).append(run)
    rows = []
    for k, part in groups.items():
        rouge = [final_rouge(r) for r in part]
        rows.append([k, part[0].label, fmt(float(np.nanmean(rouge))), len(part),
                     fmt(float(np.nanmean([window_mean(r, "ce", "last") for r in part])), 3),
                     fmt(float(np.nanmean([probe_summary(r).get("difficulty_last", math.nan)
                                           for r in part])), 3)])
    return rows


def table1_section(study: Study) -> str:
    runs = study.divergences
    out = ["## Table 1 shape: base divergences, plain and with AdaKD", ""]
    def base_of(run: Run) -> str:  # "rkl", "fkl", "GKD/jsd", "DistiLLM/srkl", ...
        return method_label({**run.config, "latf": "off", "idts": "off"})

    divs = list(dict.fromkeys(base_of(r) for r in runs))
    rows = []
    for div in divs:
        cells = []
        for comp in ("base", "full (AdaKD)"):
            part = [r for r in runs if base_of(r) == div and component(r) == comp]
            cells.append(float(np.mean([final_rouge(r) for r in part])) if part else math.nan)
        paper = PAPER_TABLE1_RKL if div == "rkl" else (math.nan, math.nan)
        rows.append([div, fmt(cells[0]), fmt(cells[1]), fmt(cells[1] - cells[0], signed=True),
                     fmt(paper[0]), fmt(paper[1]), fmt(paper[1] - paper[0], signed=True)])
    out.append(md_table(["method", "plain (ours)", "+ AdaKD (ours)", "Δ (ours)",
                         "plain (paper)", "+ AdaKD (paper)", "Δ (paper)"], rows))
    missing = [d for d in ("fkl", "jsd", "srkl", "ab") if d not in divs]
    if missing:
        out += ["", f"Not yet run: {', '.join(missing)} (`{REGENERATE} divergences`)."]
    regimes = [m for m in ("GKD", "DistiLLM") if not any(d.startswith(m) for d in divs)]
    if regimes:
        out += ["", f"Not yet run: the {' and '.join(regimes)} data regime(s) (`{REGENERATE} table1`)."]
    return "\n".join(out)


def table4_section(study: Study, threshold: float) -> str:
    runs = study.schedules
    out = ["## Table 4 shape: LATF against fixed and scheduled ratios (IDTS on, c = 0.5)", ""]
    def key(r):
        s = ratio_summary(r)
        return f"{_cfg(r, 'latf')} (r {fmt(s['first'])} → {fmt(s['last'])})"
    rows = _rows_with_loss(runs, key)
    latf = {r.seed: r for r in runs if _cfg(r, "latf") == "adaptive"}
    firsts: dict = {}
    for run in runs:  # the first run of each row, in the rows' order
        firsts.setdefault(key(run), run)
    paired = []
    for run in firsts.values():
        ref = latf.get(run.seed)
        paired.append("–" if ref is None or ref is run else
                      f"{fmt(paired_ce_difference(run, ref), 3, signed=True)} ± "
                      f"{fmt(paired_ce_se(run, ref), 3)}")
    rows = [row + [p] for row, p in zip(rows, paired)]
    out.append(md_table(["schedule", "method", "ROUGE-L", "seeds", f"CE on labels, last {WINDOW}",
                         "probe difficulty, last probe",
                         f"paired ΔCE vs LATF, last {WINDOW} (± SE)"], rows))
    scores = [final_rouge(r) for r in runs if (r.seed or 0) == 0]
    if len(scores) >= 2:
        spread = max(scores) - min(scores)
        out += ["", f"Reading: the ROUGE-L range over the schedules is {fmt(spread)} points, "
                + ("within" if spread < threshold else "above")
                + f" the {fmt(threshold, 1)}-point noise level; the CE columns are the better "
                "comparison (same seed, same batches)."]
    if not any(_cfg(r, "latf") in ("fixed", "cosine") for r in runs):
        out += ["", f"Fixed r = 0.75 and cosine 1.0 → 0.75 have not finished yet "
                f"(`{REGENERATE} schedules`)."]
    return "\n".join(out)


def table5_section(study: Study) -> str:
    runs = study.temperatures
    out = ["## Table 5 shape: temperature strategy (LATF on)", ""]
    names = {"off": "fixed τ = 1", "on": "IDTS (c = 0.5)", "inverse": "inverse IDTS (c = 0.5)"}
    out.append(md_table(["temperature", "method", "ROUGE-L", "seeds", f"CE on labels, last {WINDOW}",
                         "probe difficulty, last probe"],
                        _rows_with_loss(runs, lambda r: names.get(_cfg(r, "idts"), _cfg(r, "idts")))))
    if not any(_cfg(r, "idts") == "inverse" for r in runs):
        out += ["", "Inverse IDTS is not part of the sample study (run it with "
                "`python -m adakd sweep --preset demo --grid idts=inverse`)."]
    return "\n".join(out)


def ce_by_c(runs: list[Run]) -> str:
    """" CE on labels (last WINDOW steps) is lowest at c = …, highest at c = … (range …)."""
    ce: dict[float, list[float]] = {}
    for run in runs:
        ce.setdefault(_c(run), []).append(window_mean(run, "ce", "last"))
    if len(ce) < 2:
        return ""
    means = {c: float(np.mean(v)) for c, v in ce.items()}
    low, high = min(means, key=means.get), max(means, key=means.get)
    return (f" The CE on labels over the last {WINDOW} steps is lowest at c = {fmt(low, 1)} "
            f"({fmt(means[low], 3)}) and highest at c = {fmt(high, 1)} ({fmt(means[high], 3)}).")


def c_section(study: Study, threshold: float) -> str:
    out = ["## Fig. 3c–d: ROUGE-L against the IDTS strength c", ""]
    runs = study.c_sweep
    frame = c_sweep_frame(runs)
    frame = frame[frame["dataset"] == "average"]
    rows = []
    for _, row in frame.iterrows():
        part = [r for r in runs if _c(r) == row["c"]]
        rows.append([fmt(row["c"], 1), fmt(row["rouge_l_mean"]), int(row["n_seeds"]),
                     fmt(float(np.mean([window_mean(r, "ce", "last") for r in part])), 3),
                     fmt(float(np.mean([probe_summary(r).get("difficulty_last", math.nan)
                                        for r in part])), 3)])
    out.append(md_table(["c", "ROUGE-L", "seeds", f"CE on labels, last {WINDOW}",
                         "probe difficulty, last probe"], rows))
    if len(frame) >= 2:
        spread = float(frame["rouge_l_mean"].max() - frame["rouge_l_mean"].min())
        best = float(frame.loc[frame["rouge_l_mean"].idxmax(), "c"])
        out += ["", f"Reading: the highest ROUGE-L is at c = {fmt(best, 1)}; the range over c is "
                f"{fmt(spread)} points, which is "
                + ("within" if spread < threshold else "above")
                + f" the {fmt(threshold, 1)}-point noise level (the paper's default is c = 0.5)."
                + ce_by_c(runs)]
    planned = {0.1, 0.3, 0.5, 0.7, 0.9}
    missing = sorted(planned - {round(float(c), 2) for c in frame["c"]})
    if missing:
        out += ["", f"Not yet run: c = {', '.join(fmt(c, 1) for c in missing)} "
                f"(`{REGENERATE} c-sweep`)."]
    return "\n".join(out)


# ---------------------------------------------------------------- figures

def _pick(study: Study, *preds) -> Run | None:
    """The first finished run matching the first predicate that matches any (lowest seed)."""
    for pred in preds:
        found = sorted((r for r in study.runs if pred(r)), key=lambda r: (r.seed or 0, r.name))
        if found:
            return found[0]
    return None


def heatmap_example(run: Run, most: int = 48) -> int:
    """The probe example with the longest response of at most `most` tokens (else the shortest)."""
    counts = run.tokens[run.tokens["step"] == run.probe_steps[0]].groupby("example").size()
    fitting = counts[counts <= most]
    return int(fitting.idxmax() if len(fitting) else counts.idxmin())


def build_figures(study: Study) -> dict[str, tuple[object, str]]:
    """{file name: (figure, reading)} for the figures the finished runs allow."""
    figs: dict[str, tuple[object, str]] = {}
    full = study.full or _pick(study, lambda r: component(r) is not None)
    if full is not None and not full.tokens.empty:
        ex = heatmap_example(full)
        figs["fig1_difficulty_heatmap"] = (
            difficulty_heatmap_figure(difficulty_heatmap_frame(full, ex),
                                      title=f"Fig. 1 top: difficulty per token, {full.label}, probe example {ex}"),
            fig1_top_reading(full, ex))
        figs["fig1_group_bands"] = (
            group_difficulty_figure(group_difficulty_frame(full, "paper"),
                                    title=f"Fig. 1 top: difficulty of hard / mid / easy tokens (r = 0.5 split), {full.label}"),
            group_reading(full))
    if full is not None and not full.gradients.empty:
        grads = gradient_frame(full, "paper")
        figs["fig1_gradient_cosines"] = (
            gradient_cosine_figure(grads, title=f"Fig. 1 bottom (a): cos with the SFT gradient, {full.label}"),
            gradient_reading(grads))
        figs["fig1_gradient_shares"] = (
            gradient_share_figure(grads, title=f"Fig. 1 bottom (b): gradient-norm share and cos with total, {full.label}"),
            share_reading(grads))
    latf_run = full if full is not None and _cfg(full, "latf") == "adaptive" else \
        _pick(study, lambda r: _cfg(r, "latf") == "adaptive")
    if latf_run is not None:
        figs["fig3a_loss_ratio"] = (
            loss_ratio_figure(loss_ratio_frame(latf_run), latf_run.events,
                              title=f"Fig. 3a: distillation loss and LATF ratio, {latf_run.label}"),
            ratio_reading(latf_run))
    sched = [r for r in study.schedules if _cfg(r, "latf") in ("fixed", "cosine", "linear")]
    curve_runs = ([r for r in study.schedules if (r.seed or 0) == 0] if sched
                  else [r for r in study.ablation if (r.seed or 0) == 0])
    curve_runs = sorted(curve_runs, key=lambda r: r.label)
    if curve_runs:
        what = "LATF vs fixed / cosine r" if sched else "the ablation arms"
        for metric, name in (("kd", "fig3b_loss_curves_kd"), ("ce", "fig3b_loss_curves_ce")):
            frame = loss_curves_frame(curve_runs, metric=metric, smoothing=0.8)
            figs[name] = (loss_curves_figure(frame, title=f"Fig. 3b: {METRIC_NAMES[metric]} of {what} "
                                                          "(EMA 0.8)"),
                          curves_reading(curve_runs, metric, what))
    if study.c_sweep:
        figs["fig3cd_c_sweep"] = (
            c_sweep_figure(c_sweep_frame(study.c_sweep), title="Fig. 3c–d: ROUGE-L against c"),
            "ROUGE-L of the final student against the IDTS strength c (LATF adaptive); see the "
            "table above for the values and the noise level.")
    hist_run = full if full is not None and _cfg(full, "idts") == "on" else \
        _pick(study, lambda r: _cfg(r, "idts") == "on")
    if hist_run is not None and not hist_run.tokens.empty:
        frame = histogram_frame(hist_run)
        figs["fig4_histograms"] = (
            histogram_grid_figure(frame, title=f"Fig. 4: τ and student entropy, hard vs easy, {hist_run.label}"),
            histogram_reading(frame))
    for fig, _ in figs.values():
        fig.update_layout(width=FIGURE_WIDTH)
    return figs


def fig1_top_reading(run: Run, example: int) -> str:
    frame = difficulty_heatmap_frame(run, example)
    first, last = frame["step"].min(), frame["step"].max()
    a = frame[frame["step"] == first].set_index("token_index")["difficulty"]
    b = frame[frame["step"] == last].set_index("token_index")["difficulty"]
    fell = int((b < a).sum())
    return (f"Each row is a response token of probe example {example} ({len(a)} tokens), each "
            f"column a probe step. Between step {first} and step {last} the difficulty of {fell} "
            f"of {len(a)} tokens fell (mean {fmt(float(a.mean()), 3)} → {fmt(float(b.mean()), 3)}); "
            f"the hardest token at the end has s = {fmt(float(b.max()), 3)}, the easiest "
            f"{fmt(float(b.min()), 3)}.")


def group_reading(run: Run) -> str:
    med = group_medians(run)
    parts = [f"{g} {fmt(a, 3)} → {fmt(b, 3)}" for g, (a, b) in med.items()]
    return ("Median difficulty (lines) with 25–75 % and 10–90 % bands of the probe tokens in the "
            "hard / mid / easy groups at the paper's r = 0.5 split. First → last probe: "
            + ", ".join(parts) + ".")


def _first_last(grads: pd.DataFrame, column: str) -> dict[str, tuple[float, float]]:
    out = {}
    for group in ("hard", "mid", "easy"):
        rows = grads[grads["group"] == group].sort_values("step")
        if len(rows):
            out[group] = (float(rows[column].iloc[0]), float(rows[column].iloc[-1]))
    return out


def gradient_reading(grads: pd.DataFrame) -> str:
    cos = _first_last(grads, "cos_sft")
    parts = ", ".join(f"{g} {fmt(a, 3)} → {fmt(b, 3)}" for g, (a, b) in cos.items())
    easy_mean = float(grads[grads["group"] == "easy"]["cos_sft"].mean()) if "easy" in cos else math.nan
    verdict = ("as in the paper, the easy group's divergence gradient points against the SFT "
               "gradient on average" if easy_mean < 0 else
               "unlike the paper's Fig. 1, the easy group's divergence gradient does not conflict "
               "with the SFT gradient on average here")
    return (f"cos(group divergence gradient, group SFT gradient), gradients w.r.t. the student "
            f"logits, first → last probe: {parts}. Mean over probes for easy tokens: "
            f"{fmt(easy_mean, 3)}: {verdict}.")


def share_reading(grads: pd.DataFrame) -> str:
    share = _first_last(grads, "norm_share")
    tot = _first_last(grads, "cos_total")
    return ("Gradient-norm share (%) first → last probe: "
            + ", ".join(f"{g} {fmt(a, 1)} → {fmt(b, 1)}" for g, (a, b) in share.items())
            + "; cos with the full-batch gradient: "
            + ", ".join(f"{g} {fmt(a, 3)} → {fmt(b, 3)}" for g, (a, b) in tot.items()) + ".")


def ema_lag(run: Run) -> str:
    """A sentence when LATF's loss average still lags far behind the recent loss (its memory of
    about 1/(1 − β) steps is as long as the run), else ""."""
    m = run.metrics.dropna(subset=["ema"])
    if m.empty:
        return ""
    ema, recent = float(m["ema"].iloc[-1]), window_mean(run, "kd", "last")
    beta = float(run.config.get("latf_beta", 0.99))
    if not recent > 0 or ema < 1.2 * recent:
        return ""
    return (f"With β = {beta:g} the moving average remembers about {1 / (1 - beta):.0f} steps, "
            f"as long as this run: at the last step it is {fmt(ema)} while the KD objective of the "
            f"last {WINDOW} steps averages {fmt(recent)}, so it is still shedding the high loss of "
            "the first steps, and the steady fall of r reflects that as much as progress on the "
            "selected tokens.")


def ratio_reading(run: Run) -> str:
    s = ratio_summary(run)
    return (f"The KD loss (left axis) and the LATF ratio r (right axis) of {run.label}: r starts "
            f"at {fmt(s['first'])}, changes {s['changes']} times and ends at {fmt(s['last'], 3)} "
            f"(minimum {fmt(s['min'], 3)}). By the controller's rule r moves by δ = "
            f"{run.config.get('latf_delta')} whenever the loss's moving average leaves its reference "
            f"by more than ε = {run.config.get('latf_eps')} (down when it fell, up when it rose). "
            + ema_lag(run)).rstrip()


def curves_reading(runs: list[Run], metric: str, what: str) -> str:
    finals = ", ".join(f"{r.label} {fmt(window_mean(r, metric, 'last'), 3)}" for r in runs)
    note = (" The KD objective differs between arms (selected tokens, per-token τ), so only the "
            "shape is comparable." if metric == "kd" else
            " Same seed, same batches: the curves differ only by the method.")
    return (f"{METRIC_NAMES.get(metric, metric)} of {what}, mean of the last {WINDOW} steps: "
            f"{finals}.{note}")


def histogram_reading(frame: pd.DataFrame) -> str:
    parts = []
    for column in ("early", "late"):
        rows = frame[frame["column"] == column]
        if rows.empty:
            continue
        step = int(rows["step"].iloc[0])
        tau = rows[rows["quantity"] == "tau"].groupby("group")["value"].mean()
        hb = rows[rows["quantity"] == "entropy_before"].groupby("group")["value"].mean()
        ha = rows[rows["quantity"] == "entropy_after"].groupby("group")["value"].mean()
        parts.append(f"step {step}: mean τ hard {fmt(tau.get('hard', math.nan), 3)} / easy "
                     f"{fmt(tau.get('easy', math.nan), 3)}, student entropy before → after IDTS "
                     f"hard {fmt(hb.get('hard', math.nan))} → {fmt(ha.get('hard', math.nan))}, easy "
                     f"{fmt(hb.get('easy', math.nan))} → {fmt(ha.get('easy', math.nan))} nats")
    return ("IDTS gives hard tokens τ < 1 (sharper) and easy tokens τ > 1 (smoother). "
            + "; ".join(parts) + ".")


# ---------------------------------------------------------------- missing runs and the report

def missing_section(root: Path) -> str:
    rows = []
    for folder, planned, command, what in PLANNED:
        sweep = root / folder / "sweep.json"
        done = 0
        if sweep.is_file():
            try:
                runs = json.loads(sweep.read_text(encoding="utf-8")).get("runs", [])
                done = sum(1 for r in runs if r.get("state") == "finished")
            except (OSError, json.JSONDecodeError):
                done = 0
        if done < planned:
            rows.append([what, f"{done} / {planned}", f"`{command}`"])
    out = ["## Planned runs still missing", ""]
    if not rows:
        return "\n".join(out + ["None: every planned study has finished."])
    out.append(md_table(["study", "finished / planned", "command"], rows))
    out += ["", f"`{REGENERATE}` with no argument runs all of its studies in this order "
            "(its header gives the cost per run on an idle 2-core CPU)."]
    return "\n".join(out)


def verdict_section(study: Study, threshold: float) -> str:
    out = ["## What reproduces, what does not", ""]
    items = []
    full, base = study.full, study.arm("base")
    latf = study.full if study.full is not None else study.arm("+LATF")
    if latf is not None:
        s = ratio_summary(latf)
        items.append(f"**LATF's controller works as specified**: the ratio falls while the "
                     f"loss average falls (r {fmt(s['first'])} → {fmt(s['last'], 3)} over "
                     f"{s['changes']} ratio changes in {latf.label}"
                     + ("; it never rose)" if s["rises"] == 0 else f"; it rose {s['rises']} times)")
                     + (". " + ema_lag(latf) if ema_lag(latf) else "")
                     if s["last"] < s["first"] else
                     f"LATF's ratio did not fall in {latf.label} (r {fmt(s['first'])} → "
                     f"{fmt(s['last'], 3)})")
    if full is not None and not full.tokens.empty:
        med = group_medians(full)
        fell = [g for g, (a, b) in med.items() if b < a]
        items.append("**Difficulty falls in every group** of the probe tokens (median, r = 0.5 "
                     "split: " + ", ".join(f"{g} {fmt(x, 3)} → {fmt(y, 3)}" for g, (x, y) in med.items())
                     + "), as in Fig. 1 (top)"
                     if len(fell) == len(med) and med else
                     f"Difficulty fell in the groups {', '.join(fell) or 'none'} only")
        frame = histogram_frame(full)
        tau = frame[(frame["quantity"] == "tau") & (frame["column"] == "late")].groupby("group")["value"].mean()
        if "hard" in tau and "easy" in tau:
            items.append("**IDTS assigns τ < 1 to hard and τ > 1 to easy tokens** (Fig. 4), by "
                         "construction" if tau["hard"] < 1 < tau["easy"] else
                         "IDTS temperatures do not split around 1 as expected")
    if full is not None and not full.gradients.empty:
        grads = gradient_frame(full, "paper")
        easy = float(grads[grads["group"] == "easy"]["cos_sft"].mean())
        items.append("**The easy-token gradient conflict of Fig. 1 (bottom) reproduces** "
                     f"(mean cos with SFT {fmt(easy, 3)})" if easy < 0 else
                     "**The easy-token gradient conflict of Fig. 1 (bottom) does not reproduce**: "
                     f"the easy group's cos with the SFT gradient averages {fmt(easy, 3)} > 0 "
                     "(possibly because a student this far from its teacher still learns from "
                     "every token)")
    if full is not None and base is not None:
        d = final_rouge(full) - final_rouge(base)
        items.append(f"**ROUGE-L gain of AdaKD over base: {fmt(d, signed=True)} points** "
                     f"(paper: {fmt(PAPER_TABLE2['full (AdaKD)'] - PAPER_TABLE2['base'], signed=True)}); "
                     + ("within our noise level, so neither a reproduction nor a refutation"
                        if abs(d) < threshold else
                        ("same sign as the paper and above our noise level" if d > 0 else
                         "opposite sign to the paper and above our noise level")))
        paired, se = paired_ce_difference(full, base), paired_ce_se(full, base)
        items.append(compare(paired, 0.0, "AdaKD's CE on the training labels, paired with base "
                             f"over the last {WINDOW} steps,", " nats", 3)
                     + f" (± {fmt(se, 3)} standard error over the steps; one seed, so whether "
                     "this survives a change of seed is not known yet)")
    params = _params(study)
    ref = study.full or study.runs[0]
    probe = probe_summary(ref)
    gap = probe.get("ce_student_last", math.nan) - probe.get("ce_teacher_last", math.nan)
    far = (f"; the student stays far from the teacher (probe CE {fmt(probe['ce_student_last'])} "
           f"vs the teacher's {fmt(probe['ce_teacher_last'])} nats), so effects that need a "
           "student close to its teacher cannot show" if gap > 1.0 else "")
    items += [f"Scale: a {params[0]:.0f} M teacher and a {params[1]:.0f} M student for "
              f"{ref.config.get('max_steps')} steps on `{ref.config.get('data')}` are far from the "
              f"paper's 7 B → 1.5 B on instruction data{far}. Differences from the paper are "
              "expected and are not evidence against it.",
              seeds_text(study)]
    out += [f"- {item}." if not item.endswith(".") else f"- {item}" for item in items]
    return "\n".join(out)


def _params(study: Study) -> tuple[float, float, object]:
    """(teacher M parameters, student M parameters, CPU cores) of the reference run."""
    ref = study.full or (study.ablation[0] if study.ablation else study.runs[0])
    n = ref.meta.get("num_parameters", {})
    return (n.get("teacher", 0) / 1e6, n.get("student", 0) / 1e6,
            ref.meta.get("machine", {}).get("cpu_count"))


def seeds_text(study: Study) -> str:
    seeds = sorted({r.seed for r in study.ablation if r.seed is not None})
    if len(seeds) <= 1:
        return ("Seeds: one seed per arm so far; the seed spread of every table is unknown until "
                f"`{REGENERATE} seeds` has run.")
    return (f"Seeds: the ablation has seeds {seeds}; ± in Table 2 is the standard deviation over "
            "them.")


def build_report(study: Study, root: Path, exported: set[str] | None = None,
                 figures: dict[str, tuple[object, str]] | None = None,
                 figures_rel: str = "figures") -> str:
    """The whole docs/results.md. exported: figure names written as PNG (None: link all of
    `figures`); figures: build_figures(study) (None: built here)."""
    if not study.runs:
        return ("# Results: small-scale reproduction\n\nNo finished run under "
                f"`{root}` yet. Generate them with `{REGENERATE}`.\n")
    noise_text, threshold = noise_section(study)
    figures = build_figures(study) if figures is None else figures
    fig_lines = ["## Figures", ""]
    for name, (_, reading) in figures.items():
        if exported is not None and name not in exported:
            fig_lines += [f"*{name}: not exported (no browser for Kaleido); run the script where "
                          "Chromium is installed.*", ""]
            continue
        fig_lines += [f"![{name}]({figures_rel}/{name}.png)", "", reading,
                      f"([SVG]({figures_rel}/{name}.svg))" if exported is not None else "", ""]
    params = _params(study)
    header = "\n\n".join([
        "# Results: a small-scale reproduction of AdaKD",
        "<!-- Generated by scripts/make_results.py from the finished runs under sample_runs/. "
        "Do not edit by hand: change the script and re-run it. -->",
        f"This page reports the project's own measurements on the offline default pair, from "
        f"{len(study.runs)} finished runs in `sample_runs/`, next to the paper's numbers "
        "(Xie et al., AAAI 2026). The paper distils Qwen2-7B into Qwen2-1.5B on instruction "
        f"data; ours is a {params[0]:.0f} M teacher and a {params[1]:.0f} M student on a "
        f"{params[2]}-core CPU, so this is a check that the mechanisms behave as described and a "
        "statement of what such a small study can and cannot show, not a reproduction of the "
        "paper's numbers."])
    sections = [
        header, setup_section(study), noise_text, table2_section(study, threshold), loss_section(study),
        c_section(study, threshold), table4_section(study, threshold), table5_section(study),
        table1_section(study), "\n".join(fig_lines).rstrip(), verdict_section(study, threshold),
        missing_section(root),
    ]
    return "\n\n".join(s.rstrip() for s in sections) + "\n"


# ---------------------------------------------------------------- main

def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the page is a normal repository file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_figures(figures: dict, out_dir: Path) -> set[str]:
    """PNG + SVG of every figure with one browser; returns the names written."""
    from analysis.export import ExportError, ExportServer, export_many

    if not figures:
        return set()
    try:
        with ExportServer(timeout=120) as server:
            written = export_many({n: f for n, (f, _) in figures.items()}, ("png", "svg"),
                                  out_dir, scale=PNG_SCALE, timeout=120, server=server)
    except ExportError as err:
        log.error("figure export failed: %s", err)
        return set()
    for paths in written.values():
        for path in paths:
            path.chmod(0o644)  # export writes through mkstemp (0600)
    return set(figures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT / "sample_runs")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "results.md")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG/SVG export")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("kaleido", "choreographer", "logistro"):  # browser chatter at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    study = Study(collect_runs(args.root))
    log.info("%d finished runs under %s", len(study.runs), args.root)
    figures = build_figures(study) if study.runs else {}
    # docs/results.md -> docs/figures/; any other page -> <page>-figures/ beside it
    rel = "figures" if args.out.name == "results.md" else f"{args.out.stem}-figures"
    fig_dir = args.out.parent / rel
    if not args.no_figures:
        exported = export_figures(figures, fig_dir)
    else:
        exported = {n for n in figures if (fig_dir / f"{n}.png").is_file()}
    atomic_write_text(args.out, build_report(study, args.root, exported, figures, rel))
    log.info("wrote %s (%d figures)", args.out, len(exported or ()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
