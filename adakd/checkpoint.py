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

from adakd.rundir import write_json_atomic

log = logging.getLogger(__name__)

_NAME = re.compile(r"^step-(\d{6,})$")
STATE_FILE = "trainer_state.json"


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


# ---------------------------------------------------------------- RNG state as JSON
def rng_state() -> dict[str, Any]:
    """All RNG states the run uses, as JSON-safe lists."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
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
            log.warning("checkpoint has %d CUDA RNG states, this machine %d GPUs: CUDA RNG not restored",
                        len(cuda), torch.cuda.device_count())


# ---------------------------------------------------------------- save / load
def save_checkpoint(folder: Path, step: int, model: torch.nn.Module, optimizer, scheduler,
                    trainer_state: dict[str, Any]) -> Path:
    """Write checkpoint `step` under `folder` (checkpoints/) atomically; return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / checkpoint_name(step)
    tmp = folder / (final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_model(model, str(tmp / "model.safetensors"))
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


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer=None, scheduler=None,
                    device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load weights (and optimiser/scheduler state when given); return trainer_state.json."""
    path = Path(path)
    state = json.loads((path / STATE_FILE).read_text())
    missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=True, device=str(device))
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
    if scheduler is not None:
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    return state


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (step, path), oldest first; *.tmp leftovers are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        m = _NAME.match(child.name)
        if m and child.is_dir() and (child / STATE_FILE).exists() and (child / "model.safetensors").exists():
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_checkpoint(folder: Path) -> tuple[int, Path] | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def prune_checkpoints(folder: Path, keep: int) -> list[Path]:
    """Delete all but the `keep` newest complete checkpoints and any *.tmp leftovers."""
    folder = Path(folder)
    removed = []
    for step, path in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        shutil.rmtree(path)
        removed.append(path)
    if folder.is_dir():
        for child in folder.iterdir():
            if child.name.endswith(".tmp") and child.is_dir():
                shutil.rmtree(child)
                removed.append(child)
    return removed
