"""Hand-made run directories in the exact format of docs/contracts.md, with known values.

For tests of anything that reads runs (analysis, app). Everything is deterministic and
written straight with json / pandas (not through the code under test), so a test can
compute the numbers it expects from what it wrote.

    from tests.rundir_factory import make_run, make_tokens
    path = make_run(tmp_path, "adakd-s0", config={"idts_c": 0.3}, steps=20,
                    probe_steps=[0, 10, 20], final_rouge={"chatterbot": 31.5})
    path = make_run(tmp_path, "plain", config={"latf": "off", "idts": "off"}, tokens=False)

Every `make_run` argument that names a file takes: None = generate plausible contents
(documented in the generator), False = do not write the file, or the exact contents.
`make_sweep` writes a sweep folder of runs, `tokens_from(**columns)` a small tokens frame
with chosen values. Damage helpers: `truncate(path, keep)`, `append_garbage(path)`,
`dead_pid()` for a "running" run whose process is gone.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from adakd.config import RunConfig

TOKEN_TEXTS = [
    "The",
    " cat",
    " sat",
    " on",
    " the",
    " mat",
    ".",
    "\n",
    " It",
    " was",
    " warm",
    ",",
    " and",
    " happy",
    "!",
    " Yes",
]


def default_config(**overrides) -> dict:
    """RunConfig defaults as a dict (the config.json "config" object), with overrides."""
    config = RunConfig().to_dict()
    unknown = set(overrides) - set(config)
    if unknown:
        raise ValueError(f"not RunConfig fields: {sorted(unknown)}")
    config.update(overrides)
    return config


# ---------------------------------------------------------------- generators


def ratio_at(step: int, config: dict) -> float:
    """The generated r used at `step` (1-based; step 0 = before training, r of step 1).

    adaptive: 1.0, then −0.05 every 5 steps from step 6 on, floored at 0.5
    (1.0 for steps 1–5, 0.95 for 6–10, …); off: 1.0; fixed: ratio_start;
    linear / cosine: ratio_start → ratio_end over max_steps.
    """
    latf = config.get("latf", "adaptive")
    start, end = config.get("ratio_start", 1.0), config.get("ratio_end", 0.5)
    total = max(1, config.get("max_steps", 100))
    t = max(step, 1)
    if latf == "adaptive":
        return max(0.5, 1.0 - 0.05 * ((t - 1) // 5))
    if latf == "fixed":
        return float(start)
    if latf == "linear":
        return float(start + (end - start) * min(1.0, t / total))
    if latf == "cosine":
        return float(end + (start - end) * 0.5 * (1 + math.cos(math.pi * min(1.0, t / total))))
    return 1.0


def make_metrics(steps: int, config: dict, scale: float = 1.0) -> list[dict]:
    """metrics.jsonl records for steps 1..steps: kd = scale·3/(1 + 0.1·step), ce = kd + 0.5,
    loss = kd (kd_ratio 1), ratio = ratio_at(step), mean_tau = 1.0, n_valid = 100,
    n_selected = floor(ratio·100)."""
    records = []
    for step in range(1, steps + 1):
        kd = scale * 3.0 / (1.0 + 0.1 * step)
        ratio = ratio_at(step, config)
        records.append(
            {
                "step": step,
                "loss": kd,
                "kd": kd,
                "ce": kd + 0.5,
                "ratio": ratio,
                "next_ratio": ratio_at(step + 1, config),
                "ema": kd,
                "ref": kd,
                "mean_tau": 1.0,
                "n_valid": 100,
                "n_selected": int(math.floor(ratio * 100)),
                "lr": 1e-4,
                "grad_norm": 1.0,
                "tokens_per_s": 500.0,
                "step_seconds": 0.2,
                "time": f"2026-01-01T00:00:{step % 60:02d}Z",
            }
        )
    return records


def make_events(steps: int, config: dict, state: str) -> list[dict]:
    """start at step 0, a ratio_change (old, new) wherever ratio_at changes, and the
    final event of `state` (finished / stopped / failed) at the last step."""
    events = [{"step": 0, "kind": "start", "message": "started", "time": "2026-01-01T00:00:00Z"}]
    for step in range(1, steps + 1):
        old, new = ratio_at(step, config), ratio_at(step + 1, config)
        if new != old and step < steps:
            events.append(
                {
                    "step": step,
                    "kind": "ratio_change",
                    "message": f"r {old} -> {new}",
                    "old": old,
                    "new": new,
                    "time": "2026-01-01T00:00:00Z",
                }
            )
    if state in ("finished", "stopped", "failed"):
        extra = {"error": "boom"} if state == "failed" else {}
        events.append({"step": steps, "kind": state, "message": state, "time": "2026-01-01T00:01:00Z", **extra})
    return events


def idts(difficulty: np.ndarray, median: float, c: float, base: float = 1.0) -> np.ndarray:
    """τ = base·exp(−c·tanh(log(max(s/m, 1e-8)))), m = 0 -> τ = base (docs/method.md §3)."""
    if median <= 0:
        return np.full(len(difficulty), base)
    return base * np.exp(-c * np.tanh(np.log(np.maximum(difficulty / median, 1e-8))))


def lower_median(values: np.ndarray) -> float:
    """torch.median's convention: the lower of the two middle values for an even count."""
    ordered = np.sort(values)
    return float(ordered[(len(ordered) - 1) // 2])


def make_tokens(
    probe_steps, config: dict | None = None, n_examples: int = 2, n_tokens: int = 8, seed: int = 0
) -> pd.DataFrame:
    """tokens.parquet rows: n_examples × n_tokens response tokens at each probe step.

    difficulty = u·exp(−step/20) with u ~ U(0.05, 0.95) fixed per token (seeded), so tokens
    get easier over training; groups: top k // 2 hard, the other k selected mid, rest easy
    with k = max(1, floor(r·N)) pooled over all probe tokens of the step; tau = IDTS over the
    selected (NaN otherwise); tau_all = IDTS over all; hard = s > lower median of all;
    entropy_student = 1 + 2s, entropy_student_idts = entropy_student·tau_all,
    entropy_student_tau = entropy_student·tau on selected tokens (NaN otherwise), entropy_teacher
    = 1; p_label_teacher = 0.6, p_label_student = 0.6·(1 − s).
    """
    config = config or default_config()
    c = config.get("idts_c", 0.5) if config.get("idts", "on") != "off" else 0.0
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.05, 0.95, size=n_examples * n_tokens)
    frames = []
    for step in probe_steps:
        ratio = ratio_at(step, config)
        s = base * math.exp(-step / 20.0)
        n = len(s)
        k = max(1, int(math.floor(ratio * n)))
        order = np.argsort(-s, kind="stable")
        group = np.full(n, "easy", dtype=object)
        group[order[: k // 2]] = "hard"
        group[order[k // 2 : k]] = "mid"
        selected = np.zeros(n, dtype=bool)
        selected[order[:k]] = True
        tau = np.full(n, np.nan)
        tau[selected] = idts(s[selected], lower_median(s[selected]), c)
        tau_all = idts(s, lower_median(s), c)
        example = np.repeat(np.arange(n_examples), n_tokens)
        token_index = np.tile(np.arange(n_tokens), n_examples)
        token_id = 100 + token_index + 1000 * example
        text = [TOKEN_TEXTS[i % len(TOKEN_TEXTS)] for i in token_index]
        frames.append(
            pd.DataFrame(
                {
                    "step": np.full(n, step, dtype=np.int64),
                    "example": example.astype(np.int64),
                    "position": (token_index + 10).astype(np.int64),
                    "token_index": token_index.astype(np.int64),
                    "token_id": token_id.astype(np.int64),
                    "token_text": text,
                    "difficulty": s,
                    "selected": selected,
                    "group": group.astype(str),
                    "tau": tau,
                    "tau_all": tau_all,
                    "hard": s > lower_median(s),
                    "entropy_student": 1 + 2 * s,
                    "entropy_student_idts": (1 + 2 * s) * tau_all,
                    "entropy_student_tau": (1 + 2 * s) * tau,
                    "entropy_teacher": np.ones(n),
                    "p_label_teacher": np.full(n, 0.6),
                    "p_label_student": 0.6 * (1 - s),
                    "top1_teacher": text,
                    "top1_student": text,
                    "ratio": np.full(n, ratio),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def tokens_from(**columns) -> pd.DataFrame:
    """A tokens.parquet frame from the given columns (equal-length lists); every other
    contract column gets a filler: step 0, example 0, token_index 0..n−1, position
    token_index + 10, token_id 100 + token_index + 1000·example, token_text from
    TOKEN_TEXTS, difficulty 0.5, selected True, group "hard", tau = tau_all = 1.0, hard
    False, entropies (all four) 1.0, label probabilities 0.5, top-1 = token_text, ratio 1.0."""
    n = len(next(iter(columns.values())))
    data = {key: list(value) for key, value in columns.items()}
    data.setdefault("step", [0] * n)
    data.setdefault("example", [0] * n)
    data.setdefault("token_index", list(range(n)))
    data.setdefault("position", [i + 10 for i in data["token_index"]])
    data.setdefault("token_id", [100 + i + 1000 * e for i, e in zip(data["token_index"], data["example"], strict=True)])
    data.setdefault("token_text", [TOKEN_TEXTS[i % len(TOKEN_TEXTS)] for i in data["token_index"]])
    for key, value in (
        ("difficulty", 0.5),
        ("selected", True),
        ("group", "hard"),
        ("tau", 1.0),
        ("tau_all", 1.0),
        ("hard", False),
        ("entropy_student", 1.0),
        ("entropy_student_idts", 1.0),
        ("entropy_student_tau", 1.0),
        ("entropy_teacher", 1.0),
        ("p_label_teacher", 0.5),
        ("p_label_student", 0.5),
        ("ratio", 1.0),
    ):
        data.setdefault(key, [value] * n)
    data.setdefault("top1_teacher", data["token_text"])
    data.setdefault("top1_student", data["token_text"])
    frame = pd.DataFrame(data)
    return frame.astype({k: "int64" for k in ("step", "example", "position", "token_index", "token_id")})


GRADIENT_NORMS = {"hard": 3.0, "mid": 2.0, "easy": 1.0}


def make_gradients(probe_steps, config: dict | None = None) -> pd.DataFrame:
    """gradients.parquet rows per probe step: split "paper" (r = 0.5, all three groups) and
    "current" (r = ratio_at(step); no easy row at r = 1). grad_norm hard 3, mid 2, easy 1
    (norm_share = 100·norm / sum of the step's groups); cos_sft hard 0.5, mid 0.1,
    easy −0.2 − step/1000; cos_total = grad_norm / 4; n_tokens 25 / 25 / 50."""
    config = config or default_config()
    rows = []
    for step in probe_steps:
        for split, ratio in (("current", ratio_at(step, config)), ("paper", 0.5)):
            groups = ["hard", "mid"] + (["easy"] if ratio < 1.0 else [])
            total = sum(GRADIENT_NORMS[g] for g in groups)
            for group in groups:
                rows.append(
                    {
                        "step": step,
                        "split": split,
                        "ratio": ratio,
                        "group": group,
                        "n_tokens": {"hard": 25, "mid": 25, "easy": 50}[group],
                        "cos_sft": {"hard": 0.5, "mid": 0.1, "easy": -0.2 - step / 1000}[group],
                        "cos_total": GRADIENT_NORMS[group] / 4.0,
                        "norm_share": 100.0 * GRADIENT_NORMS[group] / total,
                        "grad_norm": GRADIENT_NORMS[group],
                    }
                )
    frame = pd.DataFrame(rows)
    return frame.astype({"step": "int64", "n_tokens": "int64"})


def eval_record(step: int, model: str, rouge: dict[str, float], n: int = 10) -> dict:
    """One eval.jsonl record; rouge_l_avg is the plain mean of the datasets' scores."""
    return {
        "step": step,
        "model": model,
        "rouge_l": dict(rouge),
        "rouge_l_avg": sum(rouge.values()) / len(rouge),
        "n": {d: n for d in rouge},
        "samples": {
            d: [{"instruction": "Hi", "reference": "Hello", "response": "Hello there", "rouge_l": 66.67}] for d in rouge
        },
        "decoding": {"greedy": False, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 48, "seed": 0},
        "seconds": 1.0,
    }


# ---------------------------------------------------------------- the run directory


def make_run(
    root,
    name: str,
    *,
    config: dict | None = None,
    meta: dict | bool | None = None,
    steps: int = 10,
    total_steps: int | None = None,
    state: str = "finished",
    pid: int | None = None,
    status: dict | bool | None = None,
    metrics=None,
    events=None,
    probe_steps=None,
    tokens=None,
    gradients=None,
    evals=None,
    final_rouge: dict | None = None,
    reference_rouge: dict | None = None,
    checkpoints=(),
    n_examples: int = 2,
    n_tokens: int = 8,
    loss_scale: float = 1.0,
    token_seed: int | None = None,
) -> Path:
    """Write run directory root/name and return its path.

    config: RunConfig overrides (on top of RunConfig defaults; max_steps defaults to steps).
    meta: overrides of config.json's top level, or False for no config.json.
    steps: logged optimiser steps (metrics 1..steps); total_steps: status total (default
    max_steps). state/pid: status.json ("running" gets this process's pid unless given);
    status: the whole status dict, or False for no status.json.
    metrics / events / tokens / gradients / evals: None = generated (make_metrics,
    make_events, make_tokens, make_gradients at probe_steps, default [0, steps // 2, steps];
    evals from final_rouge, default {"chatterbot": 30.0}, at the last step, plus teacher and
    student_init records at step 0 when reference_rouge = {"teacher": {...},
    "student_init": {...}} is given); False = no file; otherwise exactly these contents
    (list of dicts for JSONL, DataFrame for parquet).
    checkpoints: steps for which checkpoints/step-NNNNNN/model.safetensors is created.
    n_examples, n_tokens, token_seed (default: the config seed): shape and values of the
    generated probe tokens; loss_scale multiplies the generated losses (runs that differ).
    """
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    config = default_config(**{"max_steps": steps, **(config or {})})
    total_steps = config["max_steps"] if total_steps is None else total_steps
    probe_steps = [0, steps // 2, steps] if probe_steps is None else list(probe_steps)

    if meta is not False:
        document = {
            "format": 1,
            "name": name,
            "preset": "smoke",
            "config": config,
            "seed": config["seed"],
            "device": "cpu",
            "dtype": "float32",
            "device_reason": "no GPU",
            "versions": {
                "python": sys.version.split()[0],
                "torch": "2.13.0",
                "transformers": "5.23.0",
                "adakd": "0.1.0",
            },
            "git_revision": None,
            "machine": {"platform": "linux", "cpu_count": 2, "gpu": None},
            "command": ["python", "-m", "adakd", "train", "--preset", "smoke"],
            "started_at": "2026-01-01T00:00:00Z",
            "num_parameters": {"teacher": 1000, "student": 100},
        }
        document.update(meta or {})
        write_json(path / "config.json", document)
    if status is not False:
        if status is None:
            status = {
                "state": state,
                "step": steps,
                "total_steps": total_steps,
                "pid": pid if pid is not None else os.getpid(),
                "error": "boom" if state == "failed" else None,
                "updated_at": "2026-01-01T00:01:00Z",
                "last_checkpoint": max(checkpoints) if checkpoints else None,
            }
        write_json(path / "status.json", status)
    if metrics is not False:
        write_jsonl(path / "metrics.jsonl", make_metrics(steps, config, loss_scale) if metrics is None else metrics)
    if events is not False:
        write_jsonl(path / "events.jsonl", make_events(steps, config, state) if events is None else events)
    if tokens is not False:
        seed = config["seed"] if token_seed is None else token_seed
        frame = make_tokens(probe_steps, config, n_examples, n_tokens, seed) if tokens is None else tokens
        frame.to_parquet(path / "tokens.parquet", index=False)
    if gradients is not False:
        frame = make_gradients(probe_steps, config) if gradients is None else gradients
        frame.to_parquet(path / "gradients.parquet", index=False)
    if evals is not False:
        if evals is None:
            evals = []
            for model, rouge in (reference_rouge or {}).items():
                evals.append(eval_record(0, model, rouge))
            evals.append(eval_record(steps, "student", final_rouge or {"chatterbot": 30.0}))
        write_jsonl(path / "eval.jsonl", evals)
    for step in checkpoints:
        folder = path / "checkpoints" / f"step-{step:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.safetensors").write_bytes(b"")
    return path


def make_sweep(root, name: str, runs: dict[str, dict], **run_kwargs) -> Path:
    """A sweep folder root/name with sweep.json and one run per {run name: config overrides}
    (each written by make_run with run_kwargs). Returns the sweep folder."""
    folder = Path(root) / name
    paths = {run: make_run(folder, run, config=overrides, **run_kwargs) for run, overrides in runs.items()}
    grid: dict[str, list] = {}
    for overrides in runs.values():
        for key, value in overrides.items():
            grid.setdefault(key, [])
            if value not in grid[key]:
                grid[key].append(value)
    write_json(
        folder / "sweep.json",
        {
            "format": 1,
            "grid": grid,
            "runs": [
                {
                    "name": run,
                    "overrides": [f"{k}={v}" for k, v in overrides.items()],
                    "state": run_kwargs.get("state", "finished"),
                }
                for run, overrides in runs.items()
            ],
        },
    )
    assert all(p.parent == folder for p in paths.values())
    return folder


def write_json(path: Path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def write_jsonl(path: Path, records: list[dict]) -> None:
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


# ---------------------------------------------------------------- damage


def truncate(path, keep: int | float = 0.5) -> None:
    """Cut a file to `keep` bytes (int) or that fraction of its size (float)."""
    path = Path(path)
    data = path.read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else keep
    path.write_bytes(data[:size])


def append_garbage(path, text: str = "{not json at all", newline: bool = True) -> None:
    """Append a line that is not JSON (with its newline: a damaged line, not a cut one)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(text + ("\n" if newline else ""))


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped (for "crashed" runs)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
