"""Where runs live, the cached run table, run loading, and the run selection shared by the pages.

`analysis.runs.load_run` already keeps loaded runs in memory until one of their files changes
(`analysis.runs.run_signature`: mtime, size and inode of each file), so the app calls it
directly and shares the `Run` (read-only). The run table goes through `st.cache_data`, keyed on
the signatures of every run under the roots, so a run that is still training shows its new
steps as soon as it writes them. The frames behind the figures are cached in app/loaders.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import streamlit as st

from adakd.runs.rundir import runs_root  # the folder new runs go to; the pages call state.runs_root()
from analysis import runs as _runs
from analysis.runs import Run

SELECTED = "selected_runs"  # session key: list of run paths (str) chosen on the Runs page


def sample_root() -> Path:
    return _runs.SAMPLE_RUNS_DIR


def roots() -> tuple[str, ...]:
    """Folders searched for runs: the runs root first, then the shipped sample runs."""
    return tuple(dict.fromkeys(str(p) for p in (runs_root(), sample_root())))


def roots_signature(search: tuple[str, ...]) -> tuple:
    """Signature over every run folder under the roots (a few stat calls per run)."""
    return tuple((str(p), _runs.run_signature(p)) for p in _runs.find_runs([Path(r) for r in search]))


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


def load_run(path: str | os.PathLike) -> Run:
    """The analysis `Run` at `path` (cached by analysis.runs until its files change)."""
    return _runs.load_run(path)


def load_runs(paths: Iterable[str | os.PathLike]) -> list[Run]:
    return [load_run(p) for p in paths]


def clear_caches() -> None:
    """Forget the run table and the loaded runs (the Runs page's Reload button, after a delete).

    The figure frames (app/loaders.py) need no clearing: they are keyed on the files they were
    computed from.
    """
    _list_runs.clear()
    _runs.clear_cache()


def selected_paths() -> list[str]:
    """Runs chosen on the Runs page that still exist; defaults to the first listed run."""
    table = list_runs()
    known = table["path"].astype(str).tolist() if len(table) else []
    chosen = [p for p in st.session_state.get(SELECTED, []) if p in known]
    if not chosen and known:
        chosen = [default_run(table)]
    if chosen != st.session_state.get(SELECTED):
        set_selected(chosen)
    return chosen


def default_run(table: pd.DataFrame) -> str:
    """The run a fresh session opens on: the newest finished run, else the first listed."""
    finished = table[table["state"] == "finished"]
    return str((finished if len(finished) else table)["path"].iloc[0])


def set_selected(paths: Iterable[str | os.PathLike]) -> None:
    from app import url_state

    st.session_state[SELECTED] = [str(p) for p in paths]
    url_state.keep(SELECTED, [], url_state.RUNS)  # the session's copy and the URL follow at once
