"""The report's opening sections: the set-up and the noise floor that every comparison uses."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.report.markdown import fmt
from analysis.report.numbers import final_rouge, probe_summary, sample_noise, wall_minutes
from analysis.report.settings import NOISE_FLOOR, REGENERATE, WEAK_TEACHER_ROUGE
from analysis.report.study import Study
from analysis.runs import Run


def decoding_text(run: Run) -> str:
    """ "sampled (temperature 1, top-p 1, ≤ 48 new tokens, seed 0)" from the eval records."""
    decoding = next((r.get("decoding") for r in run.eval_records if r.get("decoding")), None)
    if not decoding:
        return "generated"
    if decoding.get("greedy"):
        return f"greedy (≤ {decoding.get('max_new_tokens')} new tokens)"
    seeds = decoding.get("seeds") or [decoding.get("seed")]
    seeds_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"generation seeds {', '.join(map(str, seeds))} averaged"
    return (
        f"sampled (temperature {decoding.get('temperature'):g}, top-p {decoding.get('top_p'):g}, "
        f"≤ {decoding.get('max_new_tokens')} new tokens, {seeds_text})"
    )


def teacher_sft_text(config: dict, meta: dict) -> str:
    """How the teacher was fine-tuned before distillation (``teacher_sft_steps``), ending the Teacher line."""
    steps = config.get("teacher_sft_steps") or 0
    if not steps:
        return "."
    record = meta.get("teacher_sft") or {}
    losses = (
        f" (training loss {record['first_loss']:.3f} at its first step, {record['last_loss']:.3f} at its last)"
        if isinstance(record.get("first_loss"), float) and isinstance(record.get("last_loss"), float)
        else ""
    )
    return (
        f", **fine-tuned first** on the training replies for {steps} steps at lr {config.get('teacher_sft_lr')}"
        f"{losses}, as the paper's teacher is fine-tuned on its task; the student is built from the teacher "
        "before that fine-tuning (adakd/training/teacher_sft.py)."
    )


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
        + (", the offline default (SmolLM2-135M-Instruct)" if c.get("teacher") == "smollm2-135m-instruct" else "")
        + teacher_sft_text(c, meta),
        (
            f"- **Student**: `subset` = teacher layers {layers} ({len(layers)} of the teacher's layers, "
            f"{params.get('student', 0) / 1e6:.1f} M parameters), initialised from the teacher's weights."
            if c.get("student") == "subset"
            else f"- **Student**: `{c.get('student')}` ({params.get('student', 0) / 1e6:.1f} M parameters)."
        ),
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
        "the final student"
        + (
            f" (docs/method.md §7: references of ≥ {c['eval_min_reference_words']} words, a "
            "duplicated prompt scored once against all its references; beside ROUGE-L the "
            "held-out cross-entropy on the references, KL(teacher ‖ model) and the share of "
            "degenerate replies)."
            if c.get("eval_min_reference_words")
            else "."
        ),
        f"- **Hardware**: {machine.get('cpu_count')} CPU cores, "
        f"{'GPU ' + str(machine['gpu']) if machine.get('gpu') else 'no GPU'} "
        f"(`{machine.get('platform')}`), device `{meta.get('device')}`, {meta.get('dtype')}; "
        f"Python {versions.get('python')}, torch {versions.get('torch')}, transformers "
        f"{versions.get('transformers')}, adakd {versions.get('adakd')}.",
        f"- **Wall time**: {fmt(np.nanmin(walls), 1)}–{fmt(np.nanmax(walls), 1)} min per run, "
        f"evaluation and probes included; the fastest optimiser step took "
        f"{fmt(float(steps.min()), 2)} s, the median {fmt(float(steps.median()), 2)} s."
        + (
            " The machine was shared with other jobs while these ran, so wall times are "
            "inflated by contention and say nothing about AdaKD's overhead."
            if float(steps.median()) > 2 * float(steps.min())
            else ""
        ),
        "",
        f"Regenerate every run with `{REGENERATE}` (the same seeds give the same numbers on the "
        "same machine), then this page and its figures with "
        "`.venv/bin/python scripts/make_results.py`. Each run's exact command, package versions "
        "and machine are in its `config.json`; `.venv/bin/python scripts/check_sample_run.py "
        "<run folder>` trains one run again from it and compares every recorded number (metrics, "
        "probes, evaluation, LATF ratio changes).",
    ]
    return "\n".join(lines)


def shortest_reference(runs: list[Run]) -> tuple[str, str] | None:
    """(instruction, reference) of the shortest stored reference of a teacher evaluation."""
    pairs = [
        (s.get("instruction", ""), s.get("reference", ""))
        for run in runs
        for r in run.eval_records
        if r.get("model") == "teacher"
        for samples in (r.get("samples") or {}).values()
        for s in samples
    ]
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
            + (
                "unknown here: every arm has one seed"
                if len(seeds) <= 1
                else f"measured over seeds {seeds} in the tables (± = std over seeds)"
            )
            + ". The stored scores cover only the first few prompts of each evaluation, so this "
            "is a rough estimate. We read ROUGE-L differences below "
            f"{fmt(threshold, 1)} points (twice the standard error of a difference, and at least "
            f"{fmt(NOISE_FLOOR, 0)} points because the seed spread is not counted) as noise."
        )
    else:
        threshold = NOISE_FLOOR
        text.append(
            "The eval records store no per-prompt scores, so the sampling noise is unknown; "
            f"we read ROUGE-L differences below {fmt(NOISE_FLOOR, 0)} points as noise."
        )
    if teacher and float(np.mean(teacher)) >= WEAK_TEACHER_ROUGE:
        text += ["", f"The teacher itself scores {fmt(float(np.mean(teacher)))} ROUGE-L on these prompts."]
    elif teacher:
        shortest = shortest_reference(study.runs)
        example = f' (e.g. "{shortest[1]}" to "{shortest[0]}")' if shortest else ""
        text += [
            "",
            f"The teacher itself scores {fmt(float(np.mean(teacher)))} ROUGE-L on these "
            f"prompts: the references are short and idiosyncratic{example}, so even a fluent "
            "answer shares few words with them. ROUGE-L is a weak signal at this scale; the "
            "loss-level numbers below are the stronger evidence.",
        ]
    return "\n".join(text), threshold
