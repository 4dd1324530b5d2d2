"""Where runs live, cached run loading, and the run selection shared by the pages.

`analysis.runs.load_run` already keeps loaded runs in memory until one of their files changes
(it checks mtime/size of each file), so the app calls it directly and shares the `Run`
(read-only). What the pages derive from runs — the run table and the per-figure frames —
goes through `st.cache_data`, keyed on the run paths plus a signature of their files
(size + mtime), so a run that is still training is re-read as soon as it writes something.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from adakd.rundir import runs_root  # the folder new runs go to; the pages call state.runs_root()
from analysis import runs as _runs

SELECTED = "selected_runs"  # session key: list of run paths (str) chosen on the Runs page


def sample_root() -> Path:
    return _runs.SAMPLE_RUNS_DIR


def roots() -> tuple[str, ...]:
    """Folders searched for runs: the runs root first, then the shipped sample runs."""
    return tuple(dict.fromkeys(str(p) for p in (runs_root(), sample_root())))


def run_signature(path: str | os.PathLike) -> tuple:
    """(file, size, mtime) of the run's files: changes whenever the run writes anything."""
    sig = []
    for name in _runs.RUN_FILES:
        try:
            st_ = os.stat(os.path.join(path, name))
            sig.append((name, st_.st_size, st_.st_mtime_ns))
        except OSError:
            pass
    return tuple(sig)


def roots_signature(search: tuple[str, ...]) -> tuple:
    """Signature over every run folder under the roots (a few stat calls per run)."""
    return tuple((str(p), run_signature(p)) for p in _runs.find_runs([Path(r) for r in search]))


@st.cache_data(max_entries=8, show_spinner=False)
def _list_runs(search: tuple[str, ...], signature: tuple) -> pd.DataFrame:
    table = _runs.list_runs([Path(r) for r in search])
    if table.empty:
        return table
    # Own runs first, newest first; then the samples by name.
    table = table.assign(_own=~table["is_sample"].astype(bool), _t=table["started_at"].fillna("").astype(str))
    table = table.sort_values(["_own", "_t", "name"], ascending=[False, False, True])
    return table.drop(columns=["_own", "_t"]).reset_index(drop=True)


def list_runs() -> pd.DataFrame:
    """One row per run under the roots (see analysis.runs.list_runs)."""
    search = roots()
    return _list_runs(search, roots_signature(search))


def load_run(path: str | os.PathLike):
    """The analysis `Run` at `path` (cached by analysis.runs until its files change)."""
    return _runs.load_run(path)


def load_runs(paths) -> list:
    return [load_run(p) for p in paths]


@st.cache_data(max_entries=256, show_spinner=False)
def _frame(module: str, func: str, paths: tuple[str, ...], signature: tuple, kwargs: tuple):
    import importlib

    fn = getattr(importlib.import_module(module), func)
    runs = [load_run(p) for p in paths]
    return fn(*runs, **dict(kwargs))


def frame(module: str, func: str, *paths: str, **kwargs) -> pd.DataFrame:
    """`module.func(run_1, …, **kwargs)` cached on the runs' file signatures.

    e.g. frame("analysis.figures.dynamics", "loss_ratio_frame", path).
    """
    sig = tuple(run_signature(p) for p in paths)
    return _frame(module, func, tuple(str(p) for p in paths), sig, tuple(sorted(kwargs.items())))


@st.cache_data(max_entries=64, show_spinner=False)
def _frame_of_list(module: str, func: str, paths: tuple[str, ...], signature: tuple, kwargs: tuple):
    import importlib

    fn = getattr(importlib.import_module(module), func)
    return fn([load_run(p) for p in paths], **dict(kwargs))


def frame_of_runs(module: str, func: str, paths, **kwargs) -> pd.DataFrame:
    """`module.func([runs], **kwargs)` cached on the runs' file signatures (compare figures)."""
    paths = tuple(str(p) for p in paths)
    sig = tuple(run_signature(p) for p in paths)
    return _frame_of_list(module, func, paths, sig, tuple(sorted(kwargs.items())))


def clear_caches() -> None:
    _list_runs.clear()
    _frame.clear()
    _frame_of_list.clear()
    _runs.clear_cache()


def selected_paths() -> list[str]:
    """Runs chosen on the Runs page that still exist; defaults to the first listed run."""
    table = list_runs()
    known = table["path"].astype(str).tolist() if len(table) else []
    chosen = [p for p in st.session_state.get(SELECTED, []) if p in known]
    if not chosen and known:
        chosen = [default_run(table)]
    st.session_state[SELECTED] = chosen
    return chosen


def default_run(table: pd.DataFrame) -> str:
    """The run a fresh session opens on: the newest finished run, else the first listed."""
    finished = table[table["state"] == "finished"]
    return str((finished if len(finished) else table)["path"].iloc[0])


def set_selected(paths) -> None:
    st.session_state[SELECTED] = [str(p) for p in paths]
