"""The trained student of a run that kept no weights, rebuilt from its config.json.

Sample runs ship without checkpoints (weights never go into git), yet the token explorer needs
the trained student. Training is deterministic on one machine (scripts/check_sample_run.py shows
identical numbers), so the student is trained again from the run's config.json — with probes and
evaluation off, which never change what training draws (both run under ``probes.untouched``) —
and its final checkpoint is kept in the cache:

    <adakd cache>/rebuilt/<sha256 of config.json's "config">/step-NNNNNN/   (model.safetensors, ...)
    <adakd cache>/rebuilt/<sha256 ...>/rebuild.json                          how it was checked

The rebuilt run's loss at every logged step is compared with the original run's metrics.jsonl:
``max_loss_difference`` 0.0 means the same weights bit for bit; another CPU or library build can
differ in the last bits (rebuild.json says by how much, and the explorer shows it).

    python -m adakd rebuild RUN        # prints the checkpoint folder when done
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

REBUILD_FILE = "rebuild.json"
# what a rebuild changes in the run's config: none of it changes the trained weights
REBUILD_OVERRIDES = {
    # a TRL run is rebuilt by the project's loop, which takes the same steps
    # (tests/integration/test_trl.py); rebuild.json's loss comparison says how close it came
    "trainer": "adakd",
    "probe_interval": 0,
    "eval_examples": 0,
    "eval_interval": 0,
    "checkpoint_interval": 0,
    "keep_checkpoints": 1,
}


def rebuild_key(config: dict) -> str:
    """sha256 of the run's config fields (sorted JSON): two runs with the same config share it."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:32]


def _run_config(run_dir: Path) -> dict:
    from adakd.runs.rundir import recorded_config

    fields = recorded_config(run_dir)
    if fields is None:
        raise ValueError(f"{run_dir}: config.json is missing or unreadable, so the student cannot be rebuilt")
    return fields


def rebuild_folder(run_dir: str | Path) -> Path:
    """Where the rebuilt student of this run lives (whether or not it exists yet)."""
    from adakd.models.assets import cache_dir

    return cache_dir() / "rebuilt" / rebuild_key(_run_config(Path(run_dir)))


def rebuilt_checkpoint(run_dir: str | Path) -> tuple[int, Path, dict] | None:
    """(step, checkpoint folder, rebuild.json) of the rebuilt student, or None when not built."""
    from adakd.training.checkpoint import latest_checkpoint

    folder = rebuild_folder(run_dir)
    try:
        report = json.loads((folder / REBUILD_FILE).read_text())
    except (OSError, ValueError):
        return None
    found = latest_checkpoint(folder)
    return (found[0], found[1], report) if found else None


def rebuild_progress(run_dir: str | Path) -> tuple[int, int] | None:
    """(step, total) of a rebuild of this run under way (its scratch run's status.json), else None."""
    from adakd.runs.rundir import read_json

    folder = rebuild_folder(run_dir)
    for status_file in folder.parent.glob(f".rebuild-{folder.name}-*/run/status.json"):
        status = read_json(status_file) or {}
        return int(status.get("step") or 0), int(status.get("total_steps") or 0)
    return None


def estimated_seconds(run_dir: str | Path) -> float | None:
    """The run's own training time (sum of step_seconds in metrics.jsonl): a rebuild on the same
    machine takes about as long, minus probes and evaluation; plus the teacher's fine-tuning time
    (config.json's ``teacher_sft``) when that teacher is not in the cache yet."""
    from adakd.runs.rundir import read_json, read_jsonl

    logged = [r.get("step_seconds") for r in read_jsonl(Path(run_dir) / "metrics.jsonl")]
    seconds = [s for s in logged if isinstance(s, (int, float)) and math.isfinite(s)]
    if not seconds:
        return None
    document = read_json(Path(run_dir) / "config.json")
    sft = document.get("teacher_sft") if isinstance(document, dict) else None
    if isinstance(sft, dict) and isinstance(sft.get("seconds"), (int, float)) and not _teacher_cached(sft):
        seconds.append(float(sft["seconds"]))
    return sum(seconds)


def _teacher_cached(sft: dict) -> bool:
    from adakd.training.teacher_sft import RECIPE_FILE, teachers_dir

    return (teachers_dir() / str(sft.get("folder")) / RECIPE_FILE).is_file()


def _losses(records: list[dict]) -> dict[int, float]:
    """step -> loss of the metrics lines that logged a float loss."""
    return {r["step"]: r["loss"] for r in records if "step" in r and isinstance(r.get("loss"), float)}


def rebuild_student(run_dir: str | Path, on_step=None) -> Path:
    """Train the run's student again (probes and evaluation off) and keep its final checkpoint in
    the cache; return the checkpoint folder. Already built: returned at once."""
    from adakd.config import RunConfig
    from adakd.runs.rundir import read_jsonl, write_json_atomic
    from adakd.training.checkpoint import latest_checkpoint
    from adakd.training.trainer import train

    run_dir = Path(run_dir)
    existing = rebuilt_checkpoint(run_dir)
    if existing is not None:
        return existing[1]
    original = _run_config(run_dir)
    config = RunConfig.from_record({**original, **REBUILD_OVERRIDES})
    folder = rebuild_folder(run_dir)
    folder.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # the scratch folder's name carries the key, so a dashboard can follow this rebuild's status.json
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".rebuild-{folder.name}-") as scratch:
        trained = train(
            config,
            Path(scratch) / "run",
            name=f"rebuild of {run_dir.name}",
            command=["python", "-m", "adakd", "rebuild", str(run_dir)],
            on_step=on_step,
        )
        found = latest_checkpoint(Path(trained) / "checkpoints")
        if found is None:
            raise RuntimeError(f"rebuilding {run_dir} wrote no checkpoint")
        ours = _losses(read_jsonl(Path(trained) / "metrics.jsonl"))
        theirs = _losses(read_jsonl(run_dir / "metrics.jsonl"))
        shared = [s for s in theirs if s in ours]
        report = {
            "run": str(run_dir),
            "step": found[0],
            "steps_compared": len(shared),
            "max_loss_difference": max((abs(ours[s] - theirs[s]) for s in shared), default=None),
            "seconds": round(time.perf_counter() - started, 1),
        }
        staging = Path(scratch) / "result"
        staging.mkdir()
        shutil.move(str(found[1]), staging / found[1].name)
        write_json_atomic(staging / REBUILD_FILE, report)
        if folder.exists():  # a half-finished earlier attempt (no rebuild.json): replace it
            shutil.rmtree(folder)
        staging.rename(folder)  # whole or nothing: rebuild.json is only ever seen beside its weights
    log.info(
        "rebuilt the student of %s in %.0fs (max loss difference %s over %d steps)",
        run_dir,
        report["seconds"],
        report["max_loss_difference"],
        report["steps_compared"],
    )
    return folder / found[1].name
