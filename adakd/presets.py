"""Named presets: partial RunConfig dicts (data, not code paths).

    demo        the offline default: SmolLM2-135M-Instruct teacher (embedded GGUF), a 6-layer
                subset student, chatterbot data; a complete run with evaluation in under
                5 minutes on a 2-core CPU (measured; see the report in docs / the README).
    smoke       a few steps on two tiny random Llamas with the SmolLM2 tokenizer (tests).
    gpt2-dolly  GPU preset for a real Hugging Face pair: GPT-2 XL (1.5B) -> GPT-2 (124M) on
                databricks-dolly-15k. Needs the two models in the HF cache (or network) and the
                Dolly JSONL file, which no registry ships: download it yourself and pass
                `--set data=/path/to/databricks-dolly-15k.jsonl` (the preset's default is that
                file name in the current folder). Sizes follow the paper's GPT-2 setting
                (lr 5e-4 ... here 1e-4 for stability with bf16, batch 8 x accum 4, 1 epoch-ish).
    ablation-*  the paper's component ablation on the demo shapes (Table: base, +IDTS,
                +LATF, full AdaKD), used by sweeps and the dashboard.

`resolve_preset(name, overrides)` gives a validated RunConfig.
"""

from __future__ import annotations

import difflib

from adakd.config import RunConfig, apply_overrides

# 6 of the teacher's 30 layers, evenly spaced (OFFLINE_ASSETS.md): 49.6 M parameters.
DEMO_LAYERS = [0, 6, 12, 18, 24, 29]

_DEMO = {
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
    "max_steps": 60,
    "batch_size": 4,
    "grad_accum": 1,
    "log_interval": 1,
    "probe_interval": 10,
    "probe_examples": 4,
    "gradient_batch_size": 8,
    "eval_interval": 0,
    "eval_examples": 16,
    "eval_max_new_tokens": 32,
    "checkpoint_interval": 0,
    "keep_checkpoints": 1,
}

PRESETS: dict[str, dict] = {
    "demo": _DEMO,
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
