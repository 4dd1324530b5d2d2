"""A cache of evaluation records for models every run of a study shares: the teacher and the
initial student.

Every arm of a study starts from the same student and is scored against the same teacher on the
same prompts, so their sampled replies (3 seeds × 120 prompts: minutes on a CPU) are the same in
every run. The key is a digest of everything the record depends on:

    sha256( weights of the model (every parameter and buffer, bytes and shape, in state-dict order),
            the evaluation prompts and references, the decoding and protocol settings,
            the teacher's weights when the record compares with it (KL), device type, dtype,
            torch and transformers versions, CACHE_FORMAT )

so a hit is by construction the record the run would have computed. Records live in
``<adakd cache>/evals/<key>.json`` (``$ADAKD_CACHE``), written atomically; an unreadable entry is
ignored (and recomputed), never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# 2: replies sampled row by row (adakd.evaluation.decoding.RowSeededGumbel); format-1 records drew them
# from the global generator, seed by seed, and are not what a run computes now
CACHE_FORMAT = 2
# settings that change how fast a record is computed, not what it holds
_SPEED_ONLY = ("generation_batch_size",)
log = logging.getLogger(__name__)


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of every tensor of the state dict (name, dtype, shape, bytes) in order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def record_key(
    model_digest: str, datasets: dict, settings: dict, *, teacher_digest: str | None, device: str, dtype: str
) -> str:
    """The cache key of one evaluation (see the module docstring)."""
    import transformers

    sets = {
        name: [[p.instruction, p.context, list(getattr(p, "references", None) or (p.response,))] for p in prompts]
        for name, prompts in datasets.items()
    }
    payload = {
        "format": CACHE_FORMAT,
        "model": model_digest,
        "teacher": teacher_digest,
        "sets": sets,
        "settings": {k: v for k, v in settings.items() if k not in _SPEED_ONLY},
        "device": device,
        "dtype": dtype,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _path(key: str) -> Path:
    from adakd.models.assets import cache_dir

    return cache_dir() / "evals" / f"{key}.json"


def load_record(key: str) -> dict | None:
    """The cached record for ``key``, or None (missing or unreadable)."""
    path = _path(key)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("ignoring unreadable cached evaluation %s (%s)", path, err)
        return None
    return record if isinstance(record, dict) and "rouge_l" in record else None


def store_record(key: str, record: dict) -> None:
    """Write ``record`` for ``key`` (temp file + rename; a failure only logs: the cache is optional)."""
    from adakd.runs.rundir import write_json_atomic

    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, record)
    except OSError as err:
        log.warning("could not cache the evaluation record in %s (%s)", path.parent, err)


def evaluate_with_cache(
    model: PreTrainedModel,
    tokenizer,
    datasets: dict,
    *,
    step: int,
    model_name: str,
    teacher: torch.nn.Module | None,
    settings: dict,
    device,
    dtype,
) -> tuple[dict, bool]:
    """``adakd.evaluation.evaluate.evaluate_model`` through the cache: ``(record, was_cached)``.

    The stored record is the one computed the first time; on a hit only ``step`` is set to this
    run's and ``seconds`` to the time the lookup took.
    """
    import time

    from adakd.evaluation.evaluate import evaluate_model

    started = time.perf_counter()
    compare_to = None if teacher is model else teacher  # a model is not compared with itself
    key = record_key(
        weights_digest(model),
        datasets,
        settings,
        teacher_digest=weights_digest(compare_to) if compare_to is not None else None,
        device=torch.device(device).type,
        dtype=str(dtype),
    )
    cached = load_record(key)
    if cached is not None and cached.get("model") == model_name:
        return {**cached, "step": int(step), "seconds": round(time.perf_counter() - started, 3)}, True
    record = evaluate_model(model, tokenizer, datasets, step=step, model_name=model_name, teacher=teacher, **settings)
    store_record(key, record)
    return record, False
