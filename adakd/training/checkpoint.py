"""Checkpoints: checkpoints/step-000123/ with the student, optimiser, scheduler and trainer state.

Layout (docs/contracts.md):
    model.safetensors   student weights (safetensors; tied embeddings handled by save_model)
    optimizer.pt        optimizer.state_dict()   } torch.save; loaded back with
    scheduler.pt        scheduler.state_dict()   } torch.load(weights_only=True) only
    trainer_state.json  step, ratio-schedule state, RNG states, data position, regime state

A checkpoint is written into step-000123.tmp and renamed when complete, so a folder without
the .tmp suffix is always whole; leftovers of a killed writer are ignored and cleaned up.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from adakd.runs.rundir import CHECKPOINTS, remove_temp_files, write_json_atomic

log = logging.getLogger(__name__)

_NAME = re.compile(r"^step-(\d{6,})$")
STATE_FILE = "trainer_state.json"
MODEL_FILE = "model.safetensors"


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


# ---------------------------------------------------------------- RNG state as JSON
def rng_state() -> dict[str, Any]:
    """All RNG states the run uses, as JSON-safe lists."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state()
    if not isinstance(numpy_state, tuple):  # a dict comes only from a generator other than MT19937
        raise RuntimeError("numpy's global random generator is not MT19937: its state cannot be saved")
    name, keys, pos, has_gauss, cached = numpy_state
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().tolist(),
        "cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else None,
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states written by `rng_state` (CUDA only when present on both sides)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if state.get("cuda") and torch.cuda.is_available():
        cuda = [torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warning(
                "checkpoint has %d CUDA RNG states, this machine %d GPUs: CUDA RNG not restored",
                len(cuda),
                torch.cuda.device_count(),
            )


# ---------------------------------------------------------------- save / load
def save_checkpoint(
    folder: Path, step: int, model: torch.nn.Module, optimizer, scheduler, trainer_state: dict[str, Any]
) -> Path:
    """Write checkpoint `step` under `folder` (checkpoints/) atomically; return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / checkpoint_name(step)
    tmp = folder / (final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_model(model, str(tmp / MODEL_FILE))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        write_json_atomic(tmp / STATE_FILE, {"step": step, **trainer_state})  # written last
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # e.g. a full disk: give the space back
        raise
    if final.exists():  # same step saved twice (e.g. stop right after resume): replace it
        old = folder / (final.name + ".old.tmp")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    return final


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; str() names the file and what to do."""


def damaged(path: Path, err: BaseException) -> CheckpointError:
    """The one-line error for a checkpoint folder whose file `path` failed to load with `err`."""
    from adakd.runs.failures import describe

    reason = "not valid JSON" if isinstance(err, json.JSONDecodeError) else describe(err)
    folder = path.parent
    return CheckpointError(
        f"checkpoint {folder} is damaged ({path.name}: {reason}): move that folder aside "
        f"(e.g. mv {folder} {folder}.damaged) to use the checkpoint before it"
    )


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer=None, scheduler=None, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Load weights (and optimiser/scheduler state when given); return trainer_state.json.

    Any file that does not load raises CheckpointError naming it (never the library's own
    multi-line text, which for torch advises loading unsafely)."""
    path = Path(path)
    steps = [
        (STATE_FILE, lambda f: json.loads(f.read_text())),
        (MODEL_FILE, lambda f: load_model(model, str(f), strict=True, device=str(device))),
    ]
    if optimizer is not None:
        steps.append(
            ("optimizer.pt", lambda f: optimizer.load_state_dict(torch.load(f, map_location=device, weights_only=True)))
        )
    if scheduler is not None:
        steps.append(("scheduler.pt", lambda f: scheduler.load_state_dict(torch.load(f, weights_only=True))))
    results = {}
    for name, read in steps:
        try:
            results[name] = read(path / name)
        except Exception as err:  # any failure of a file we wrote means the file is damaged
            raise damaged(path / name, err) from err
    if not isinstance(results[STATE_FILE], dict):
        raise damaged(path / STATE_FILE, ValueError("not a JSON object"))
    return results[STATE_FILE]


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (step, path), oldest first; *.tmp leftovers are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        m = _NAME.match(child.name)
        if m and child.is_dir() and _complete(child):
            found.append((int(m.group(1)), child))
    return sorted(found)


TRL_STATE_FILE = "adakd_state.json"  # written last into a TRL checkpoint (adakd/integrations/trl_distillation.py)


def list_trl_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """Complete TRL checkpoints (step, path) of a ``trainer = "trl"`` run, oldest first: the
    ``checkpoint-<step>`` folders that hold ``adakd_state.json`` (a writer killed half-way through
    a checkpoint leaves one without it). Their ``model.safetensors`` loads like ours."""
    folder = Path(folder)
    found = []
    for child in folder.iterdir() if folder.is_dir() else []:
        prefix, _, number = child.name.partition("-")
        if prefix == "checkpoint" and number.isdigit() and (child / TRL_STATE_FILE).is_file():
            found.append((int(number), child))
    return sorted(found)


def _complete(folder: Path) -> bool:
    """Whether a checkpoint folder has the files written first and last (weights, state)."""
    return (folder / STATE_FILE).exists() and (folder / MODEL_FILE).exists()


def latest_checkpoint(folder: Path) -> tuple[int, Path] | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def prune_checkpoints(folder: Path, keep: int | None) -> list[Path]:
    """Delete all but the `keep` newest complete checkpoints (None: keep all) and leftovers.

    Leftovers are *.tmp folders of a killed writer and step folders that lack a file: only a
    deletion killed half-way leaves those, since a checkpoint is complete before it is renamed
    into place. A checkpoint is renamed to *.tmp before it is deleted, so a kill during the
    deletion leaves a .tmp folder that the next start removes.
    """
    folder = Path(folder)
    removed = []
    old = list_checkpoints(folder)[:-keep] if keep else []
    for _step, path in old:
        doomed = path.with_name(path.name + ".old.tmp")
        path.rename(doomed)
        shutil.rmtree(doomed)
        removed.append(path)
    if folder.is_dir():
        for child in sorted(folder.iterdir()):
            half_deleted = _NAME.match(child.name) and child.is_dir() and not _complete(child)
            if (child.name.endswith(".tmp") and child.is_dir()) or half_deleted:
                shutil.rmtree(child)
                removed.append(child)
    return removed


def clean_leftovers(run_dir: Path) -> list[Path]:
    """Remove what a killed writer left in a run directory: temp files of atomic writes, *.tmp
    and half-deleted checkpoint folders. Only the holder of the run's lock (adakd.runs.runlock) may
    call this, on start: no other write can be under way."""
    run_dir = Path(run_dir)
    removed = remove_temp_files(run_dir) + prune_checkpoints(run_dir / CHECKPOINTS, None)
    if removed:
        log.info("removed leftovers of an interrupted writer in %s: %s", run_dir, ", ".join(p.name for p in removed))
    return removed
