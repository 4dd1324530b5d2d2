"""Typed, cached loaders of the frames behind the pages' figures and tables.

Each function is the analysis function of the same name behind `st.cache_data`; its settings
have no defaults here (those live in analysis only). A `Run` argument is keyed on its folder,
its files' signature when it was read (`Run.signature`, see `analysis.runs.run_signature`) and
its state, never on its contents: a run that is still training gets new frames as soon as it
writes something, an unchanged run is never computed again, and hashing stays a few tuples
however large the run is.

Every change of a live run leaves its old frames in the cache until they are evicted, hence the
`max_entries` bounds: room for a page's views of a handful of runs (the frames are small next to
the runs: one probe example, two probe steps, per-step curves).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from analysis import tables, validity
from analysis.figures import compare, competence, dynamics, gradients, regime, temperature
from analysis.runs import Run

PER_RUN_ENTRIES = 32  # frames of one function kept, e.g. heat maps of 32 (run, example) pairs
SEVERAL_RUNS_ENTRIES = 16  # frames over a list of runs (Compare), e.g. 16 (runs, metric, smoothing)


def run_key(run: Run) -> tuple:
    """What a frame computed from `run` depends on: the folder, its files when read, its state
    ("crashed" is found from the process, not from a file)."""
    return (str(run.path), run.signature, run.state)


# st.cache_data's hash_funcs, which also apply to the runs inside a list argument
BY_RUN_FILES: dict[str | type, Callable[[Any], Any]] = {Run: run_key}


# ---------------------------------------------------------------- one run


@st.cache_data(max_entries=PER_RUN_ENTRIES, show_spinner=False, hash_funcs=BY_RUN_FILES)
def loss_ratio_frame(run: Run) -> pd.DataFrame:
    return dynamics.loss_ratio_frame(run)


@st.cache_data(max_entries=PER_RUN_ENTRIES, show_spinner=False, hash_funcs=BY_RUN_FILES)
def difficulty_heatmap_frame(run: Run, example: int) -> pd.DataFrame:
    return dynamics.difficulty_heatmap_frame(run, example=example)


@st.cache_data(max_entries=PER_RUN_ENTRIES, show_spinner=False, hash_funcs=BY_RUN_FILES)
def group_difficulty_frame(run: Run, split: str) -> pd.DataFrame:
    return dynamics.group_difficulty_frame(run, split=split)


@st.cache_data(max_entries=PER_RUN_ENTRIES, show_spinner=False, hash_funcs=BY_RUN_FILES)
def competence_frame(run: Run) -> pd.DataFrame:
    return competence.competence_frame(run)


@st.cache_data(max_entries=PER_RUN_ENTRIES, show_spinner=False, hash_funcs=BY_RUN_FILES)
def regime_frame(run: Run) -> pd.DataFrame:
    return regime.regime_frame(run)


@st.cache_data(max_entries=PER_RUN_ENTRIES, show_spinner=False, hash_funcs=BY_RUN_FILES)
def gradient_frame(run: Run, split: str) -> pd.DataFrame:
    return gradients.gradient_frame(run, split=split)


@st.cache_data(max_entries=PER_RUN_ENTRIES, show_spinner=False, hash_funcs=BY_RUN_FILES)
def histogram_frame(run: Run, early_step: int | None, late_step: int | None, view: str) -> pd.DataFrame:
    return temperature.histogram_frame(run, early_step=early_step, late_step=late_step, view=view)


@st.cache_data(max_entries=PER_RUN_ENTRIES, show_spinner=False, hash_funcs=BY_RUN_FILES)
def token_diff_frame(run_a: Run, run_b: Run) -> pd.DataFrame:
    return compare.token_diff_frame(run_a, run_b)


# ---------------------------------------------------------------- several runs


@st.cache_data(max_entries=4 * PER_RUN_ENTRIES, show_spinner=False, hash_funcs=BY_RUN_FILES)
def run_curve(run: Run, metric: str, smoothing: float) -> pd.DataFrame:
    return compare.run_curve(run, metric, smoothing)


def loss_curves_frame(runs: list[Run], metric: str, smoothing: float) -> pd.DataFrame:
    """Not cached as a whole: each run's curve is (``run_curve``), so adding a run to the
    comparison computes that run's curve only; the legends depend on all of them."""
    return compare.with_legends([run_curve(run, metric, smoothing) for run in runs])


@st.cache_data(max_entries=SEVERAL_RUNS_ENTRIES, show_spinner=False, hash_funcs=BY_RUN_FILES)
def c_sweep_frame(runs: list[Run]) -> pd.DataFrame:
    return compare.c_sweep_frame(runs)


@st.cache_data(max_entries=SEVERAL_RUNS_ENTRIES, show_spinner=False, hash_funcs=BY_RUN_FILES)
def results_table(runs: list[Run]) -> pd.DataFrame:
    return tables.results_table(runs)


@st.cache_data(max_entries=SEVERAL_RUNS_ENTRIES, show_spinner=False, hash_funcs=BY_RUN_FILES)
def paper_table(runs: list[Run], table: str) -> pd.DataFrame:
    return tables.paper_table(runs, table)


@st.cache_data(max_entries=SEVERAL_RUNS_ENTRIES, show_spinner=False, hash_funcs=BY_RUN_FILES)
def ablation_table(runs: list[Run]) -> pd.DataFrame:
    return tables.ablation_table(runs)


@st.cache_data(max_entries=PER_RUN_ENTRIES, show_spinner=False, hash_funcs=BY_RUN_FILES)
def baseline_problems(run: Run) -> list[str]:
    return validity.baseline_problems(run)
