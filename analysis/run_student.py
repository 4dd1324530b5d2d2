"""A run's student at initialisation or any checkpoint, built as the run's config.json says.

    steps = run_checkpoints(run_dir)                        # complete checkpoints, oldest first
    student = load_student_checkpoint(run_dir, step=None)   # latest; 0 = initialisation

A run that kept no checkpoint (the sample runs) can have its final student rebuilt into the
cache (adakd/training/rebuild.py); that checkpoint counts as the run's own here.

Used by the token explorer and the dashboard (re-exported from :mod:`analysis.explorer`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def run_checkpoints(run_dir: str | Path) -> list[int]:
    """Steps of the complete checkpoints of a run, oldest first (0 = initialisation is always
    available through :func:`load_student_checkpoint` even without a checkpoint)."""
    return sorted(_checkpoints(Path(run_dir)))


def _checkpoints(run: Path) -> dict[int, Path]:
    """step -> folder: the run's complete checkpoints plus its rebuilt final student, if any."""
    from adakd.training.checkpoint import list_checkpoints, list_trl_checkpoints
    from adakd.training.rebuild import rebuilt_checkpoint

    # a trainer = "trl" run keeps TRL's checkpoint-<step> folders (docs/contracts.md)
    found = dict(list_checkpoints(run / "checkpoints")) | dict(list_trl_checkpoints(run / "checkpoints"))
    try:
        rebuilt = rebuilt_checkpoint(run)
    except ValueError:  # no readable config.json: nothing can have been rebuilt
        rebuilt = None
    if rebuilt is not None:
        found.setdefault(rebuilt[0], rebuilt[1])
    return found


def load_student_checkpoint(run_dir: str | Path, step: int | None = None, teacher=None):
    """The run's student, built as its config.json says, with the weights of checkpoint ``step``.

    step: None = the latest checkpoint; 0 = the student at initialisation (a step-0 checkpoint
    when there is one, else rebuilt from the config: the layer subset of the teacher, or the
    random student with the run's seed); any other step must be a complete checkpoint.
    teacher: the run's teacher when already loaded (a "subset" student is cut from it); None
    loads it from the config. Weights are read from ``model.safetensors`` only (strict).
    Returns the student in eval mode with gradients off, on the teacher's device.
    """
    from adakd.config import RunConfig
    from adakd.runs.rundir import recorded_config
    from adakd.training.checkpoint import load_checkpoint

    run = Path(run_dir)
    fields = recorded_config(run)
    if fields is None:
        raise ValueError(f"{run}: config.json is missing or unreadable, so the student cannot be rebuilt")
    config = RunConfig.from_record(fields)
    found = _checkpoints(run)
    if step is None:
        if not found:
            raise ValueError(f"{run} has no complete checkpoint yet; pass step=0 for the student at initialisation")
        step = max(found)
    elif step != 0 and step not in found:
        available = ", ".join(str(s) for s in sorted(found)) or "none"
        raise ValueError(f"{run} has no checkpoint for step {step}; available: {available} (0 = initialisation)")
    if teacher is None:
        teacher = _load_run_teacher(config)
    # the student is built from the teacher as loaded, which a run with a fine-tuned teacher does not distil from
    base = _load_base_teacher(config) if config.teacher_sft_steps else teacher
    student = _build_run_student(config, base).to(_device(teacher))
    if step in found:
        load_checkpoint(found[step], student, device=_device(teacher))
    logger.info("student of %s at step %d (%s)", run.name, step, "checkpoint" if step in found else "initialisation")
    return student.eval().requires_grad_(False)


def _load_run_teacher(config):
    """The teacher the run distilled from (its fine-tuned copy when ``teacher_sft_steps`` > 0)."""
    from adakd.training import runsetup

    return runsetup.load_distillation_teacher(config)


def _load_base_teacher(config):
    """The teacher as loaded, which the run's student is built from."""
    from adakd.models import loading as models

    teacher, _ = models.load_teacher(config.teacher, trust_remote_code=config.trust_remote_code)
    return teacher


def _build_run_student(config, teacher):
    """The student exactly as ``adakd.training.runsetup.build_models`` builds it for this config."""
    from adakd.training import runsetup

    student = runsetup.initial_student(config, teacher, _run_tokenizer(config))
    return student.to(device=_device(teacher), dtype=torch.float32)


def _run_tokenizer(config):
    from adakd.models import loading as models
    from adakd.training import runsetup

    tiny = config.teacher == runsetup.TINY
    source = models.default_teacher_dir() if tiny or config.teacher == models.DEFAULT_TEACHER_NAME else config.teacher
    return models.load_tokenizer(source, config.trust_remote_code)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def rebuild_info(run_dir: str | Path) -> dict:
    """What the dashboard shows about rebuilding a run's trained student (adakd/training/rebuild.py):
    ``folder`` (where it goes), ``built`` (step, rebuild.json) or None, ``estimate_s`` (the run's
    own training seconds) and ``progress`` (step, total) of a rebuild under way, else None."""
    from adakd.training.rebuild import estimated_seconds, rebuild_folder, rebuild_progress, rebuilt_checkpoint

    built = rebuilt_checkpoint(run_dir)
    return {
        "folder": rebuild_folder(run_dir),
        "built": (built[0], built[2]) if built else None,
        "estimate_s": estimated_seconds(run_dir),
        "progress": rebuild_progress(run_dir),
    }
