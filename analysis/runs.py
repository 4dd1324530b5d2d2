"""Run directories -> typed DataFrames: `load_run`, `load_runs`, `find_runs`, `list_runs`.

The run directory (docs/contracts.md, format 1) is the only thing that passes from training
to analysis. `load_run` reads one into a `Run`: every file as a DataFrame with the documented
columns (empty when the file is absent), the raw config and status, and a list of problems
for what could not be read. A damaged or half-written run never raises; it loads what it can.

`load_run` is cached on the run's file signature (`run_signature`: mtime, size and inode of
each file), so calling it on every Streamlit rerun costs a few `stat` calls; a run that is
still training is read afresh each time. The returned Run is shared between callers: treat
its frames as read-only (copy before changing them).

Usage:
    from analysis.runs import default_roots, list_runs, load_run
    table = list_runs(default_roots())
    run = load_run(table.path[0])
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from adakd.runs.columns import EVAL_COLUMNS, EVENT_COLUMNS, GRADIENT_COLUMNS, METRIC_COLUMNS, TOKEN_COLUMNS
from adakd.runs.metric_gaps import gap_problems
from adakd.runs.run_notes import read_notes
from adakd.runs.rundir import effective_state, latest_step
from adakd.runs.rundir import runs_root as _runs_root
from analysis.labels import method_label
from analysis.readers import (
    checkpoint_steps,
    empty_frame,
    eval_frame,
    frame_from_rows,
    read_json,
    read_jsonl,
    read_parquet,
)

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_RUNS_DIR = REPO_ROOT / "sample_runs"

RUN_FILES = (
    "config.json",
    "status.json",
    "metrics.jsonl",
    "events.jsonl",
    "tokens.parquet",
    "gradients.parquet",
    "eval.jsonl",
    "notes.json",  # tags and notes (adakd.runs.run_notes): the run table shows them
    "checkpoints",
)
STATES = ("running", "finished", "stopped", "failed", "crashed", "unknown")


@dataclass(eq=False)  # identity comparison: field-wise == on DataFrames is ambiguous
class Run:
    """One run directory, loaded.

    config: the RunConfig fields (config.json["config"]); meta: the whole config.json;
    status: status.json as written; state: running|finished|stopped|failed|crashed|unknown
    ("crashed" = status says running but its process is gone).
    metrics/events/tokens/gradients: the files as frames with the contract's columns,
    sorted by step; metrics keeps the last line of a step logged twice (a resumed run).
    evals: one row per (eval record, dataset) with columns step, model, dataset, rouge_l, n,
    plus a row dataset="average" (rouge_l = rouge_l_avg, n = total n) per record.
    eval_records: the eval.jsonl objects as written. problems: what could not be read.
    checkpoints: steps of the complete checkpoints under checkpoints/. step_gaps: steps missing
    from or repeated in metrics.jsonl (adakd.runs.metric_gaps); such a run is never shown as plainly
    finished. signature: `run_signature` of the folder when it was read (what caches of
    anything computed from the run are keyed on).
    """

    path: Path
    name: str
    config: dict
    meta: dict
    status: dict
    state: str
    metrics: pd.DataFrame
    events: pd.DataFrame
    tokens: pd.DataFrame
    gradients: pd.DataFrame
    evals: pd.DataFrame
    eval_records: list[dict]
    problems: list[str]
    is_sample: bool
    checkpoints: list[int] = field(default_factory=list)
    step_gaps: list[str] = field(default_factory=list)  # missing / repeated metrics steps (also in problems)
    signature: tuple = ()

    @property
    def label(self) -> str:
        """Short method label, e.g. "rkl + AdaKD" (see `method_label`)."""
        return method_label(self.config)

    @property
    def seed(self) -> int | None:
        seed = self.meta.get("seed", self.config.get("seed"))
        return int(seed) if isinstance(seed, (int, float)) else None

    @property
    def probe_steps(self) -> list[int]:
        """Sorted steps that have rows in tokens.parquet."""
        return sorted(int(s) for s in self.tokens["step"].dropna().unique())

    def final_eval(self, model: str = "student") -> pd.DataFrame:
        """The evals rows of the last evaluation of `model` (empty when there is none)."""
        rows = self.evals[self.evals["model"] == model]
        if rows.empty:
            return rows
        return rows[rows["step"] == rows["step"].max()]


# ---------------------------------------------------------------- loading one run

# Runs kept in memory: more than the runs folder and sample_runs/ usually hold together, because
# `list_runs` loads every run in turn and an LRU cache smaller than that scan would never hit.
RUN_CACHE_SIZE = 256


def load_run(path: str | os.PathLike, is_sample: bool | None = None) -> Run:
    """Load the run directory at `path` (cached until one of its files changes).

    is_sample: None = decided by whether the path lies under the repository's sample_runs/.
    Never raises for bad content; a path that is not a directory gives a Run in state
    "unknown" with the problem stated.

    A run that is still training is read afresh on every call: it changes with every logged
    step, so a cache keyed on its signature would only pile up stale copies of it.
    """
    path = Path(path).expanduser().resolve()
    if is_sample is None:
        is_sample = is_sample_path(path)
    if not path.is_dir():
        return _unreadable_run(path, is_sample, "run directory not found")
    signature = run_signature(path)
    if _is_training(path):
        return _read_run(path, is_sample, signature)
    return _read_settled_run(path, is_sample, signature)


def load_runs(paths) -> list[Run]:
    """`load_run` for each path, in order."""
    return [load_run(p) for p in paths]


def clear_cache() -> None:
    """Forget every cached run (tests; the app's "reload" button)."""
    _read_settled_run.cache_clear()


def run_signature(path: str | os.PathLike) -> tuple:
    """(name, mtime_ns, size, inode) of each of the run's RUN_FILES, (name, None) when absent.

    Changes whenever the run writes, replaces (temp file + rename: a new inode) or removes one
    of its files; a few `stat` calls.
    """
    signature: list[tuple] = []
    for name in RUN_FILES:
        try:
            st = os.stat(os.path.join(path, name))
            signature.append((name, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            signature.append((name, None))
    return tuple(signature)


def _is_training(path: Path) -> bool:
    """Whether status.json says running and the run's process is still alive."""
    status, _ = read_json(path / "status.json")
    return status is not None and _state_from_status(status) == "running"


@functools.lru_cache(maxsize=RUN_CACHE_SIZE)
def _read_settled_run(path: Path, is_sample: bool, signature: tuple) -> Run:
    """`_read_run` of a run that is not training, cached: any change to its files changes the
    signature, hence the key. A crashed run stays cached as crashed: its process cannot come back."""
    return _read_run(path, is_sample, signature)


def _read_run(path: Path, is_sample: bool, signature: tuple) -> Run:
    problems: list[str] = []

    meta, found = read_json(path / "config.json")
    problems += found
    if meta is None:
        if not found:
            problems.append("config.json missing: the run's settings are unknown")
        meta = {}
    elif meta.get("format", 1) != 1:
        problems.append(f"config.json: format {meta.get('format')!r} is not 1; read as format 1")
    config = meta["config"] if isinstance(meta.get("config"), dict) else {}
    if meta and not config:
        problems.append('config.json: no "config" object with the run settings')

    status, found = read_json(path / "status.json")
    problems += found
    if status is None:
        if not found:
            problems.append("status.json missing: the run's state is unknown")
        status = {}

    metric_rows, found = read_jsonl(path / "metrics.jsonl")
    problems += found
    metrics = frame_from_rows(metric_rows, METRIC_COLUMNS, "metrics.jsonl", problems)
    metrics = metrics.drop_duplicates("step", keep="last").sort_values("step", kind="stable")

    event_rows, found = read_jsonl(path / "events.jsonl")
    problems += found
    events = frame_from_rows(event_rows, EVENT_COLUMNS, "events.jsonl", problems)
    events = events.sort_values("step", kind="stable")

    tokens, found = read_parquet(path / "tokens.parquet", TOKEN_COLUMNS)
    problems += found
    tokens = tokens.sort_values(["step", "example", "token_index"], kind="stable")

    gradients, found = read_parquet(path / "gradients.parquet", GRADIENT_COLUMNS)
    problems += found
    gradients = gradients.sort_values(["step", "split"], kind="stable")

    eval_records, found = read_jsonl(path / "eval.jsonl")
    problems += found
    evals, eval_records = eval_frame(eval_records, problems)

    skipped = [e.get("step") for e in event_rows if e.get("kind") == "skipped_step"]
    gaps = gap_problems(
        [r.get("step") for r in metric_rows], config, _state_from_status(status), status.get("step"), skipped
    )
    problems += gaps

    return Run(
        path=path,
        name=str(meta.get("name") or path.name),
        config=config,
        meta=meta,
        status=status,
        state=_state_from_status(status),
        metrics=metrics.reset_index(drop=True),
        events=events.reset_index(drop=True),
        tokens=tokens.reset_index(drop=True),
        gradients=gradients.reset_index(drop=True),
        evals=evals,
        eval_records=eval_records,
        problems=problems,
        is_sample=is_sample,
        checkpoints=checkpoint_steps(path),
        step_gaps=gaps,
        signature=signature,
    )


def _unreadable_run(path: Path, is_sample: bool, problem: str) -> Run:
    metrics, events, tokens, gradients, evals = (
        empty_frame(c) for c in (METRIC_COLUMNS, EVENT_COLUMNS, TOKEN_COLUMNS, GRADIENT_COLUMNS, EVAL_COLUMNS)
    )
    return Run(
        path, path.name, {}, {}, {}, "unknown", metrics, events, tokens, gradients, evals, [], [problem], is_sample
    )


# ---------------------------------------------------------------- state of a run


def _state_from_status(status: dict) -> str:
    """status.json's state, "crashed" for a running run whose process is gone (on this host),
    "unknown" for a missing or unrecognised state (adakd.runs.rundir.effective_state)."""
    state = effective_state(status)
    return state if state in STATES else "unknown"


# ---------------------------------------------------------------- finding runs


def default_roots() -> list[Path]:
    """[runs root (adakd.runs.rundir.runs_root), the repository's sample_runs/] (runs under the second are samples)."""
    return [_runs_root(), SAMPLE_RUNS_DIR]


def is_sample_path(path: str | os.PathLike) -> bool:
    """Whether `path` lies under the repository's sample_runs/ folder."""
    return Path(path).expanduser().resolve().is_relative_to(SAMPLE_RUNS_DIR.resolve())


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "config.json").is_file() or (path / "status.json").is_file())


# How far below a root runs are looked for: <root>/<run>, <root>/<sweep>/<run> and
# <root>/<study>/<sweep>/<run> (e.g. sample_runs/teacher-sft/ablation/seed=0,ablation=base).
SEARCH_DEPTH = 3


def find_runs(roots) -> list[Path]:
    """Run directories under `roots`: a root that is a run itself, else the runs up to SEARCH_DEPTH
    levels below it (never inside a run). Sorted per folder, no duplicates."""
    found: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        resolved = path.resolve()
        if resolved not in seen:
            seen.add(resolved)
            found.append(resolved)

    def walk(folder: Path, depth: int) -> None:
        for child in sorted(_visible_dirs(folder)):
            if is_run_dir(child):
                add(child)
            elif depth < SEARCH_DEPTH:
                walk(child, depth + 1)

    for root in roots:
        root = Path(root).expanduser()
        if not root.is_dir():
            continue
        if is_run_dir(root):
            add(root)
        else:
            walk(root, 1)
    return found


def _visible_dirs(folder: Path) -> list[Path]:
    try:
        return [
            c for c in folder.iterdir() if c.is_dir() and not c.name.startswith(".") and not c.name.endswith(".tmp")
        ]
    except OSError:
        return []


LIST_COLUMNS = [
    "name",
    "path",
    "state",
    "preset",
    "method",
    "divergence",
    "latf",
    "idts",
    "c",
    "seed",
    "steps",
    "total_steps",
    "final_loss",
    "rouge_l",
    "is_sample",
    "problems",
    "step_gaps",
    "sweep",
    "started_at",
    "tags",
    "notes",
]


def _sweep_name(path: Path, roots: list[Path]) -> str:
    """The folder holding a run, relative to its root ("ablation", "teacher-sft/ablation"); "" for a
    run directly under a root. Nested sweeps keep their parents, so two studies' "ablation" stay apart."""
    if path.parent in roots:
        return ""
    for root in roots:
        if path.is_relative_to(root):
            return path.parent.relative_to(root).as_posix()
    return path.parent.name


def list_runs(roots) -> pd.DataFrame:
    """One row per run found under `roots` (columns LIST_COLUMNS).

    steps: the step in status.json, or the last metrics step when newer (adakd.runs.rundir.latest_step:
    status.json lags up to 2 s behind a running run); total_steps: status, else
    config max_steps; final_loss: the last logged `loss`; rouge_l: the last student eval's
    average; problems: the run's problems joined by "; " ("" when none); step_gaps: the missing or
    repeated steps of metrics.jsonl ("" when none; part of problems too); sweep: the folder
    holding the run, relative to its root, when it is not a root itself ("" otherwise); tags (joined by ", ") and notes:
    the run's notes.json (adakd.runs.run_notes; a damaged one adds a problem).
    """
    roots = [Path(r).expanduser().resolve() for r in roots]
    rows = []
    for path in find_runs(roots):
        run = load_run(path)
        rows.append(summary_row(run, sweep=_sweep_name(path, roots)))
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in LIST_COLUMNS})
    return pd.DataFrame(rows, columns=LIST_COLUMNS)


def summary_row(run: Run, sweep: str = "") -> dict:
    """The `list_runs` row of one run."""
    config, status = run.config, run.status
    last_step = int(run.metrics["step"].iloc[-1]) if not run.metrics.empty else None
    final_loss = float(run.metrics["loss"].iloc[-1]) if not run.metrics.empty else None
    student = run.final_eval("student")
    average = student[student["dataset"] == "average"]["rouge_l"]
    notes = read_notes(run.path)
    return {
        "name": run.name,
        "path": str(run.path),
        "state": run.state,
        "preset": run.meta.get("preset"),
        "method": method_label(config) if config else "unknown",
        "divergence": config.get("divergence"),
        "latf": config.get("latf"),
        "idts": config.get("idts"),
        "c": config.get("idts_c") if config.get("idts", "on") != "off" else None,
        "seed": run.seed,
        "steps": latest_step(status, last_step),
        "total_steps": status.get("total_steps", config.get("max_steps")),
        "final_loss": final_loss,
        "rouge_l": float(average.iloc[0]) if len(average) else None,
        "is_sample": run.is_sample,
        "problems": "; ".join([*run.problems, *notes.problems]),
        "step_gaps": "; ".join(run.step_gaps),
        "sweep": sweep,
        "started_at": run.meta.get("started_at"),
        "tags": ", ".join(notes.tags),
        "notes": notes.notes,
    }
