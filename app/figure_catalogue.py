"""The figures the report bundle can include, each built from runs by the analysis package.

PER_RUN: one figure per run; SEVERAL_RUNS: one figure over all chosen runs. Each entry is
(label, builder) where builder(paths) returns (figure, frame) — the frame is the CSV beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from analysis.figures import compare, dynamics, gradients, temperature
from app import loaders, state

Built = tuple[go.Figure, pd.DataFrame]


def _loss_ratio(path: str) -> Built:
    run = state.load_run(path)
    df = loaders.loss_ratio_frame(run)
    return dynamics.loss_ratio_figure(df, events=run.events, title=f"Loss and LATF ratio — {run.name}"), df


def _heatmap(path: str) -> Built:
    run = state.load_run(path)
    example = int(run.tokens["example"].min()) if len(run.tokens) else 0
    df = loaders.difficulty_heatmap_frame(run, example)
    return dynamics.difficulty_heatmap_figure(df, title=f"Token difficulty, example {example} — {run.name}"), df


def _groups(path: str) -> Built:
    df = loaders.group_difficulty_frame(state.load_run(path), "current")
    return dynamics.group_difficulty_figure(df, title=f"Difficulty by group — {Path(path).name}"), df


def _grad_cos(path: str) -> Built:
    df = loaders.gradient_frame(state.load_run(path), "paper")
    return gradients.gradient_cosine_figure(df, title=f"cos with the SFT gradient — {Path(path).name}"), df


def _grad_share(path: str) -> Built:
    df = loaders.gradient_frame(state.load_run(path), "paper")
    return gradients.gradient_share_figure(df, title=f"Gradient norm share — {Path(path).name}"), df


def _histograms(path: str) -> Built:
    # the paper's Fig. 4: first against last probe step, over the tokens LATF selected
    df = loaders.histogram_frame(state.load_run(path), None, None, "selected")
    return temperature.histogram_grid_figure(df, title=f"τ and entropy — {Path(path).name}"), df


def _curves(paths: list[str]) -> Built:
    df = loaders.loss_curves_frame(state.load_runs(paths), "kd", 0.0)
    return compare.loss_curves_figure(df, title="Distillation loss"), df


def _c_sweep(paths: list[str]) -> Built:
    df = loaders.c_sweep_frame(state.load_runs(paths))
    return compare.c_sweep_figure(df, title="ROUGE-L against IDTS strength c"), df


PER_RUN = {
    "loss-ratio": ("Loss and LATF ratio (Fig. 3a)", _loss_ratio),
    "difficulty": ("Token difficulty heat map (Fig. 1 top)", _heatmap),
    "groups": ("Difficulty by group", _groups),
    "gradient-cos": ("cos with SFT gradient (Fig. 1 bottom)", _grad_cos),
    "gradient-share": ("Gradient norm share (Fig. 1 bottom)", _grad_share),
    "temperature": ("τ and entropy histograms (Fig. 4)", _histograms),
}
SEVERAL_RUNS = {
    "loss-curves": ("Loss curves of all runs (Fig. 3b)", _curves),
    "c-sweep": ("ROUGE-L against c (Fig. 3c–d)", _c_sweep),
}


def chosen(per_run: list[str], several: list[str], paths: list[str]) -> dict[str, tuple[str, Callable[[], Built]]]:
    """{name: (label, builder)} of the chosen catalogue entries, nothing built yet: the page
    counts and names the figures without drawing them, and builds only what it shows or packs."""
    entries = {
        f"{Path(p).name}-{key}": (PER_RUN[key][0], partial(PER_RUN[key][1], p)) for p in paths for key in per_run
    }
    entries |= {key: (SEVERAL_RUNS[key][0], partial(SEVERAL_RUNS[key][1], list(paths))) for key in several}
    return entries


def build(
    per_run: list[str], several: list[str], paths: list[str]
) -> tuple[dict[str, go.Figure], dict[str, pd.DataFrame], list[str]]:
    """({name: figure}, {name: frame}, [problems]) for the chosen catalogue entries."""
    figures, frames, problems = {}, {}, []
    for name, (label, builder) in chosen(per_run, several, paths).items():
        try:
            figures[name], frames[name] = builder()
        except Exception as err:  # one figure that cannot be drawn must not sink the bundle
            problems.append(f"{label} for {name}: {err}")
    return figures, frames, problems
