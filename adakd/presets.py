"""Named presets: partial RunConfig dicts (data, not code paths).

    demo        the offline default, in the study regime of docs/study_regime.md: SmolLM2-135M-Instruct
                (the embedded GGUF) fine-tuned first on chatterbot's training replies for 300 steps
                at lr 5e-5, as the paper's teacher is fine-tuned on its task (cached: every later
                run of the recipe reuses it; docs/study_regime.md §8), and a student that starts
                close to the teacher as loaded — its 768 most active of 1,536 MLP neurons per layer
                (94.7 M parameters) — on chatterbot, 200 steps of batch 4 at lr 1e-4, probes every
                50 steps; evaluation under the protocol of docs/method.md §7 on 100 held-out prompts
                with replies of >= 11 words, 3 generation seeds. Measured on the idle 2-core
                development VM: about 8 min per run (1.75 s per step, median; 76 s to evaluate the
                final student); the first run on a machine also fine-tunes the teacher (300 steps,
                about 9-11 min) and evaluates the teacher and the initial student (about 1.5 min
                each), all cached for later runs. The fine-tuned teacher scores ROUGE-L 19.4
                against 5.4 for the initial student; 200 steps of plain KD reach 14-16.
    quick       the former demo, for a quick look at the machinery (~3 min): a 6-layer subset student
                (49.6 M) that starts worse than uniform and is still writing word salad after its
                100 steps. It fails the validity gate; do not compare methods on it.
    smoke       a few steps on tiny random Llamas ("tiny-random": teacher 2 x 64, student 1 x 64)
                with the real SmolLM2 tokenizer; seconds on a CPU. For tests.
    gpt2-dolly  GPU preset for a real Hugging Face pair: GPT-2 XL (1.5 B) -> GPT-2 (124 M) on
                databricks-dolly-15k. Needs both models in the Hugging Face cache (or network
                access) and the Dolly JSONL file, which no package registry ships: download
                databricks-dolly-15k.jsonl yourself and pass
                `--set data=/path/to/databricks-dolly-15k.jsonl` (the default is that file name in
                the working directory). GPT-2 has no chat template, so prompts use the Alpaca
                template. Effective batch 32 (8 x grad_accum 4) for 3,000 steps, about 8 epochs
                of the ~12 k training examples; bf16 autocast on the GPU.
                    python -m adakd train --preset gpt2-dolly --set data=/data/dolly.jsonl
    ablation-*  the paper's component ablation (base, +IDTS, +LATF, full AdaKD) on the demo
                shapes; `python -m adakd sweep --preset demo --grid ablation` runs the same four.
    table1-*    the paper's Table 1 methods on the demo settings, each plain (LATF and IDTS off)
                and with AdaKD (`-adakd`: LATF adaptive, IDTS on):
                    table1-fkl       forward KL
                    table1-rkl       reverse KL
                    table1-ab        AB divergence, alpha 0.2, beta 0.7 (ABKD)
                    table1-gkd       GKD: jsd (lam 0.9) on-policy mixing, regime gkd, gkd_lambda 0.5
                    table1-distillm  DistiLLM: srkl (lam 0.1), regime distillm (adaptive off-policy)
                    table1-sft       the SFT baseline: cross-entropy on the reference replies only
                                     (kd_ratio 0; no teacher forward, no LATF/IDTS)
                `python -m adakd sweep --preset demo --grid table1` runs all eleven (`TABLE1`).
                On the 100-step demo DistiLLM's student-data probability φ may stay at 0: it rises
                only when the validation cross-entropy comes back >= 0.1 nat above its reference
                (the loss at step 0 or at the last rise), and a student that is still learning
                improves instead. Measured (table1-distillm, eval off, 2-core VM under load):
                validation CE 14.53 at step 0, then 10.11, 9.63, 10.21, 9.52, 9.33 at steps
                20-100, so φ stayed 0 and all 100 steps trained on ground truth: on the demo
                this preset is skew-RKL KD on the data. As in DistiLLM's release the reference
                does not follow improvements, so φ moves only once the validation loss climbs
                back above the untrained student's (+0.1), which a short run from a fresh
                subset student does not do; lowering distillm_threshold does not change that.

    table3-*    the paper's Table 3 (difficulty indicator), full AdaKD (rkl, LATF adaptive, IDTS
                c 0.5) with indicator hellinger / fkl / rkl / jsd / ce / topk (NMTKD's top-k rank
                violation, k = indicator_topk = 5). `--grid table3` runs the six (`TABLE3`).
    table4-*    the paper's Table 4 (ratio schedule), IDTS on (c 0.5): fixed-1.0, fixed-0.75,
                linear-0.75 (1.0 -> 0.75), cosine-0.75, cosine-0.5 (1.0 -> 0.5), latf (adaptive,
                the method's). `--grid table4` runs the six (`TABLE4`).
    table5-*    the paper's Table 5 (temperature strategy), LATF adaptive: fixed-1.0, fixed-0.8,
                fixed-1.2, fixed-e-0.5 (τ = e^-0.5 ≈ 0.607), inverse (τ_base·e^{+c·ŝ}), ctkd
                (learnable global τ behind a gradient-reversal layer), logit-std (z-scored
                logits, τ 1), idts (the method's). `--grid table5` runs the eight (`TABLE5`).
    Exact definitions of every arm: docs/method.md §6.

`resolve_preset(name, overrides)` gives a validated RunConfig.
"""

from __future__ import annotations

import difflib
import math

from adakd.config import RunConfig, apply_overrides
from adakd.names import INDICATORS

# 6 of the teacher's 30 layers, evenly spaced (OFFLINE_ASSETS.md): 49.6 M parameters.
DEMO_LAYERS = [0, 6, 12, 18, 24, 29]

_QUICK = {
    "teacher": "smollm2-135m-instruct",
    "student": "subset",
    "student_layers": DEMO_LAYERS,
    "data": "chatterbot",
    "max_prompt_length": 64,
    "max_length": 128,
    "divergence": "rkl",
    "lr": 2e-4,
    "lr_schedule": "cosine",
    "warmup_ratio": 0.05,
    "max_steps": 100,
    "batch_size": 4,
    "grad_accum": 1,
    "log_interval": 1,
    "probe_interval": 20,
    "probe_examples": 4,
    "gradient_batch_size": 8,
    "eval_interval": 0,
    "eval_examples": 24,
    "eval_max_new_tokens": 48,
    "checkpoint_interval": 0,
    "keep_checkpoints": 1,
}

# The study regime (docs/study_regime.md): a width-pruned student that starts close to the teacher,
# fine-tuning learning rate (3e-4 moved it away from the teacher), the evaluation protocol's held-out set.
_DEMO = {
    **_QUICK,
    # the teacher fine-tuned on the training replies first, as the paper's (docs/study_regime.md §8):
    # without it a trained student reaches the teacher's ROUGE-L and the validity gate cannot pass
    "teacher_sft_steps": 300,
    "teacher_sft_lr": 5e-5,
    "student": "pruned",
    "student_layers": None,
    "student_mlp_keep": 768,
    "lr": 1e-4,
    "max_steps": 200,
    "probe_interval": 50,
    "eval_holdout": 100,
    "eval_examples": 100,
    "eval_seeds": 3,
}

PRESETS: dict[str, dict] = {
    "demo": _DEMO,
    "quick": _QUICK,
    "smoke": {
        "teacher": "tiny-random",
        "student": "tiny-random",
        "data": "chatterbot",
        "max_train_examples": 64,
        "max_prompt_length": 32,
        "max_length": 64,
        "lr": 3e-3,
        "lr_schedule": "constant",
        "max_steps": 6,
        "batch_size": 4,
        "log_interval": 1,
        "probe_interval": 3,
        "probe_examples": 2,
        "gradient_batch_size": 4,
        "eval_examples": 0,
        "eval_max_new_tokens": 8,
        "checkpoint_interval": 3,
        "keep_checkpoints": 2,
        "device": "cpu",
    },
    "gpt2-dolly": {
        "teacher": "gpt2-xl",
        "student": "gpt2",
        "data": "databricks-dolly-15k.jsonl",
        "max_prompt_length": 256,
        "max_length": 512,
        "divergence": "rkl",
        "lr": 1e-4,
        "weight_decay": 0.0,
        "lr_schedule": "cosine",
        "warmup_ratio": 0.03,
        "max_steps": 3000,
        "batch_size": 8,
        "grad_accum": 4,
        "log_interval": 10,
        "probe_interval": 250,
        "probe_examples": 8,
        "gradient_batch_size": 16,
        "eval_interval": 1000,
        "eval_examples": 500,
        "eval_max_new_tokens": 256,
        "checkpoint_interval": 500,
        "keep_checkpoints": 2,
    },
    # Component ablation (paper Table 2) on the demo shapes.
    "ablation-base": {**_DEMO, "latf": "off", "idts": "off"},
    "ablation-idts": {**_DEMO, "latf": "off", "idts": "on"},
    "ablation-latf": {**_DEMO, "latf": "adaptive", "idts": "off"},
    "ablation-adakd": {**_DEMO, "latf": "adaptive", "idts": "on"},
}

# Paper Table 1: the five methods (loss + data regime) on the demo settings. The divergence
# parameter names are those of adakd.method.divergences.DIVERGENCES.
TABLE1_METHODS: dict[str, dict] = {
    "fkl": {"divergence": "fkl", "divergence_params": {}, "regime": "ground_truth"},
    "rkl": {"divergence": "rkl", "divergence_params": {}, "regime": "ground_truth"},
    "ab": {"divergence": "ab", "divergence_params": {"alpha": 0.2, "beta": 0.7}, "regime": "ground_truth"},
    "gkd": {"divergence": "jsd", "divergence_params": {"lam": 0.9}, "regime": "gkd", "gkd_lambda": 0.5},
    "distillm": {"divergence": "srkl", "divergence_params": {"lam": 0.1}, "regime": "distillm"},
}
PLAIN = {"latf": "off", "idts": "off"}
ADAKD = {"latf": "adaptive", "idts": "on"}
# arm name -> the RunConfig values it sets on top of the demo preset ("rkl", "rkl-adakd", ...)
TABLE1: dict[str, dict] = {
    f"{method}{suffix}": {**fields, **switch}
    for method, fields in TABLE1_METHODS.items()
    for suffix, switch in (("", PLAIN), ("-adakd", ADAKD))
}
TABLE1["sft"] = {"kd_ratio": 0.0, "regime": "ground_truth", **PLAIN}  # the SFT baseline row

# The paper's ablation tables 3-5 (docs/method.md §6): reverse KL on ground truth, IDTS c = 0.5.
_RKL = {"divergence": "rkl", "divergence_params": {}, "regime": "ground_truth", "idts_c": 0.5}
TABLE3: dict[str, dict] = {
    indicator: {**_RKL, **ADAKD, "indicator": indicator}
    for indicator in INDICATORS
    if indicator != "entropy"  # an indicator of this project's, not an arm of the paper's table
}
TABLE4: dict[str, dict] = {
    name: {**_RKL, "idts": "on", "latf": latf, "ratio_start": start, "ratio_end": end}
    for name, latf, start, end in (
        ("fixed-1.0", "fixed", 1.0, 1.0),
        ("fixed-0.75", "fixed", 0.75, 0.75),
        ("linear-0.75", "linear", 1.0, 0.75),
        ("cosine-0.75", "cosine", 1.0, 0.75),
        ("cosine-0.5", "cosine", 1.0, 0.5),
        ("latf", "adaptive", 1.0, 0.5),
    )
}
_FIXED_TAU = {"fixed-1.0": 1.0, "fixed-0.8": 0.8, "fixed-1.2": 1.2, "fixed-e-0.5": math.exp(-0.5)}
TABLE5: dict[str, dict] = {
    **{name: {**_RKL, "latf": "adaptive", "idts": "off", "base_temperature": tau} for name, tau in _FIXED_TAU.items()},
    "inverse": {**_RKL, "latf": "adaptive", "idts": "inverse"},
    "ctkd": {**_RKL, "latf": "adaptive", "idts": "off", "ctkd": True, "base_temperature": 1.0},
    "logit-std": {**_RKL, "latf": "adaptive", "idts": "off", "logit_standardize": True},
    "idts": {**_RKL, **ADAKD},
}
TABLES = {"table1": TABLE1, "table3": TABLE3, "table4": TABLE4, "table5": TABLE5}
PRESETS.update(
    {f"{table}-{arm}": {**_DEMO, **fields} for table, arms in TABLES.items() for arm, fields in arms.items()}
)


def preset_names() -> list[str]:
    return list(PRESETS)


def resolve_preset(name: str | None, overrides: list[str] | None = None) -> RunConfig:
    """RunConfig of preset `name` (None = the RunConfig defaults) with `key=value` overrides."""
    if name is None:
        base = RunConfig()
    else:
        if name not in PRESETS:
            close = difflib.get_close_matches(name, PRESETS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown preset {name!r}{hint}; available: {', '.join(PRESETS)}")
        base = RunConfig.from_dict(PRESETS[name])
    return apply_overrides(base, list(overrides or []))
