"""A teacher fine-tuned on the run's task before distillation, as in the paper.

The paper (like MiniLLM and DistiLLM, whose protocol it follows) distils from a teacher that was
first fine-tuned on the training data, so the teacher knows the task and the student learns the
task *from the teacher*. The embedded SmolLM2-135M-Instruct never saw chatterbot's replies: a
student trained for 200 steps reaches the teacher's ROUGE-L on chatterbot's held-out references,
and the validity gate (teacher > trained student > initial student) then fails on ROUGE-L
(docs/study_regime.md §8). With ``teacher_sft_steps`` N > 0 the run's teacher is

    θ_T' = N AdamW steps on  L_SFT(θ) = −(1/|R|) Σ_{t ∈ R} log p_θ(y_t | y_<t, x)

from the loaded teacher θ_T, over the reference replies R of the training split (the project's
own trainer with ``kd_ratio`` 0, cosine schedule, seed TEACHER_SFT_SEED), and θ_T' is frozen and
distilled from. The student is still built from the teacher *as loaded* (θ_T: the general model,
as the paper's student is a smaller general model), so everything it learns of the task comes
through distillation.

Every run of a study (any arm, any training seed) gets the same θ_T': the recipe holds only the
settings that change it (:data:`RECIPE_FIELDS` of the run's config plus the two teacher_sft
settings), and the result is cached under its hash:

    <adakd cache>/teachers/sft-<sha256 of the recipe>/   model.safetensors, config.json,
                                                         tokenizer files, sft_metrics.jsonl,
                                                         teacher_sft.json (the recipe, the losses of the first
                                                         and last step; written last)

The build runs under a file lock (a second process waits, a killed build leaves no half folder:
``adakd.models.assets.build_once``) and logs its progress; a later run finds the folder at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

from adakd.config import RunConfig

log = logging.getLogger(__name__)

TEACHER_SFT_SEED = 0  # one fine-tuned teacher per recipe, whatever the run's own seed
# Fields of the run's config that change the fine-tuned teacher: what it starts from, what it
# trains on (data, its split and its truncation) and how the batches are shaped. Nothing of the
# distillation (divergence, LATF, IDTS, the run's seed) is in here, so every arm shares θ_T'.
RECIPE_FIELDS = (
    "teacher",
    "trust_remote_code",
    "data",
    "max_train_examples",
    "max_prompt_length",
    "max_length",
    "eval_holdout",
    "eval_min_reference_words",
    "batch_size",
    "grad_accum",
    "weight_decay",
    "max_grad_norm",
    "dtype",
    "device",
)
RECIPE_FILE = "teacher_sft.json"  # written last: the folder is complete iff it exists
METRICS_FILE = "sft_metrics.jsonl"
FORMAT = 1  # bump when the folder's layout or the recipe's meaning changes


def sft_recipe(config: RunConfig) -> dict:
    """What decides the fine-tuned teacher of ``config``: a JSON-able dict (its hash names the folder)."""
    return {
        "format": FORMAT,
        **{name: getattr(config, name) for name in RECIPE_FIELDS},
        "steps": config.teacher_sft_steps,
        "lr": config.teacher_sft_lr,
        "seed": TEACHER_SFT_SEED,
    }


def recipe_key(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:24]


def teachers_dir() -> Path:
    """The cache folder that holds every fine-tuned teacher."""
    from adakd.models.assets import cache_dir

    return cache_dir() / "teachers"


def sft_teacher_folder(config: RunConfig) -> Path:
    """Where the fine-tuned teacher of ``config`` lives (whether or not it is built yet)."""
    return teachers_dir() / f"sft-{recipe_key(sft_recipe(config))}"


def teacher_to_build(config: RunConfig) -> Path | None:
    """The folder of the fine-tuned teacher ``config`` distils from when it is not built yet
    (the first use fine-tunes it: minutes); None when it is built or the config fine-tunes none."""
    if not config.teacher_sft_steps:
        return None
    folder = sft_teacher_folder(config)
    return None if (folder / RECIPE_FILE).is_file() else folder


def sft_config(config: RunConfig) -> RunConfig:
    """The run that fine-tunes the teacher: cross-entropy on the references (``kd_ratio`` 0) of
    the teacher as loaded, as its own student; probes, evaluation and intermediate checkpoints off."""
    from adakd.models.assets import default_teacher_dir
    from adakd.models.loading import DEFAULT_TEACHER_NAME

    source = str(default_teacher_dir()) if config.teacher == DEFAULT_TEACHER_NAME else config.teacher
    recipe = sft_recipe(config)
    settings = {name: recipe[name] for name in RECIPE_FIELDS}
    settings.update(
        teacher=source,
        student=source,
        kd_ratio=0.0,
        regime="ground_truth",
        latf="off",
        idts="off",
        lr=recipe["lr"],
        lr_schedule="cosine",
        warmup_ratio=0.05,
        max_steps=recipe["steps"],
        seed=recipe["seed"],
        probe_interval=0,
        eval_examples=0,
        eval_interval=0,
        checkpoint_interval=0,
        keep_checkpoints=1,
    )
    return RunConfig.from_dict(settings)


def distillation_teacher(config: RunConfig) -> str:
    """The teacher a run distils from: ``config.teacher`` itself, or with ``teacher_sft_steps`` > 0
    the folder of its fine-tuned copy, built first when it is not in the cache yet."""
    if not config.teacher_sft_steps:
        return config.teacher
    from adakd.models.assets import build_once

    folder = sft_teacher_folder(config)
    if not (folder / RECIPE_FILE).is_file():
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # a training run inside a data-parallel launch would try to join the launch's process group
            raise ValueError(
                f"the fine-tuned teacher of this config is not in the cache yet ({folder}): build it in one "
                "process first with `python -m adakd teacher` and the same --preset / --set, then launch again"
            )
        log.info(
            "fine-tuning the teacher for %d steps first (cached in %s; every run of this recipe reuses it)",
            config.teacher_sft_steps,
            folder,
        )
    from adakd.training.checkpoint import rng_state, set_rng_state

    # The calling run has seeded its generators already; the fine-tuning seeds and draws its own.
    # Put them back, so a run gives the same numbers whether it built its teacher or found it cached.
    saved = rng_state()
    try:
        build_once(folder, lambda tmp: _build(config, tmp), manifest=RECIPE_FILE)
    finally:
        set_rng_state(saved)
    return str(folder)


def built_record(config: RunConfig) -> dict | None:
    """What config.json records of the fine-tuned teacher a run distilled from: its cache folder's
    name and :data:`RECIPE_FILE` (recipe, steps, first and last loss, seconds); None without one."""
    if not config.teacher_sft_steps:
        return None
    folder = sft_teacher_folder(config)
    return {"folder": folder.name, **json.loads((folder / RECIPE_FILE).read_text(encoding="utf-8"))}


def _build(config: RunConfig, out: Path) -> None:
    """Fine-tune into the empty folder ``out``; :data:`RECIPE_FILE` last."""
    from adakd.training.trainer import train

    run_config = sft_config(config)
    started = time.perf_counter()
    every = max(1, run_config.max_steps // 10)

    def progress(record: dict) -> None:
        step = record.get("step", 0)
        if step % every == 0 or step == run_config.max_steps:
            log.info("teacher fine-tuning: step %d/%d, loss %.3f", step, run_config.max_steps, record.get("loss", 0.0))

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-run-") as scratch:
        trained = train(
            run_config, Path(scratch) / "run", name="teacher fine-tuning", command=["adakd"], on_step=progress
        )
        export_teacher(config, Path(trained), out, seconds=time.perf_counter() - started)


def export_teacher(config: RunConfig, trained: Path, out: Path, seconds: float) -> None:
    """Write the final student of the fine-tuning run ``trained`` (a run of :func:`sft_config`) into
    ``out`` as a model folder: weights, config and tokenizer, its metrics, :data:`RECIPE_FILE` last."""
    from adakd.models.loading import load_teacher
    from adakd.runs.rundir import read_jsonl, write_json_atomic
    from adakd.training.checkpoint import MODEL_FILE, latest_checkpoint, load_checkpoint

    run_config = sft_config(config)
    found = latest_checkpoint(trained / "checkpoints")
    if found is None:
        raise RuntimeError(f"fine-tuning the teacher wrote no checkpoint (in {trained})")
    model, tokenizer = load_teacher(run_config.teacher, trust_remote_code=run_config.trust_remote_code)
    load_checkpoint(found[1], model)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    shutil.copy(trained / "metrics.jsonl", out / METRICS_FILE)
    losses = [r["loss"] for r in read_jsonl(trained / "metrics.jsonl") if "loss" in r] or [math.nan]
    if not (out / MODEL_FILE).is_file():
        raise RuntimeError(f"fine-tuning the teacher saved no {MODEL_FILE} in {out}")
    write_json_atomic(
        out / RECIPE_FILE,
        {
            "recipe": sft_recipe(config),
            "steps": found[0],
            "first_loss": losses[0],
            "last_loss": losses[-1],
            "seconds": round(seconds, 1),
        },
    )
    log.info(
        "fine-tuned the teacher in %.0f s (loss %.3f at the first step, %.3f at the last)",
        seconds,
        losses[0],
        losses[-1],
    )
