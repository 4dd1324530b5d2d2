"""The figures the report bundle can include, each built from runs by the analysis package.

PER_RUN: one figure per run; SEVERAL_RUNS: one figure over all chosen runs. Each entry is
(label, builder) where builder(paths) returns (figure, frame) — the frame is the CSV beside it.
"""

from __future__ import annotations

from pathlib import Path

from app import state


def _loss_ratio(path):
    from analysis.figures import dynamics

    run = state.load_run(path)
    df = state.frame("analysis.figures.dynamics", "loss_ratio_frame", path)
    return dynamics.loss_ratio_figure(df, events=run.events, title=f"Loss and LATF ratio — {run.name}"), df


def _heatmap(path):
    from analysis.figures import dynamics

    run = state.load_run(path)
    example = int(run.tokens["example"].min()) if len(run.tokens) else 0
    df = state.frame("analysis.figures.dynamics", "difficulty_heatmap_frame", path, example=example)
    return dynamics.difficulty_heatmap_figure(df, title=f"Token difficulty, example {example} — {run.name}"), df


def _groups(path):
    from analysis.figures import dynamics

    df = state.frame("analysis.figures.dynamics", "group_difficulty_frame", path, split="current")
    return dynamics.group_difficulty_figure(df, title=f"Difficulty by group — {Path(path).name}"), df


def _grad_cos(path):
    from analysis.figures import gradients

    df = state.frame("analysis.figures.gradients", "gradient_frame", path, split="paper")
    return gradients.gradient_cosine_figure(df, title=f"cos with the SFT gradient — {Path(path).name}"), df


def _grad_share(path):
    from analysis.figures import gradients

    df = state.frame("analysis.figures.gradients", "gradient_frame", path, split="paper")
    return gradients.gradient_share_figure(df, title=f"Gradient norm share — {Path(path).name}"), df


def _histograms(path):
    from analysis.figures import temperature

    df = state.frame("analysis.figures.temperature", "histogram_frame", path)
    return temperature.histogram_grid_figure(df, title=f"τ and entropy — {Path(path).name}"), df


def _curves(paths):
    from analysis.figures import compare

    df = state.frame_of_runs("analysis.figures.compare", "loss_curves_frame", paths, metric="kd")
    return compare.loss_curves_figure(df, title="Distillation loss"), df


def _c_sweep(paths):
    from analysis.figures import compare

    df = state.frame_of_runs("analysis.figures.compare", "c_sweep_frame", paths)
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


def build(per_run: list[str], several: list[str], paths: list[str]):
    """({name: figure}, {name: frame}, [problems]) for the chosen catalogue entries."""
    figures, frames, problems = {}, {}, []
    jobs = [(f"{Path(p).name}-{key}", PER_RUN[key], p) for p in paths for key in per_run]
    jobs += [(key, SEVERAL_RUNS[key], list(paths)) for key in several]
    for name, (label, builder), arg in jobs:
        try:
            figures[name], frames[name] = builder(arg)
        except Exception as err:  # one figure that cannot be drawn must not sink the bundle
            problems.append(f"{label} for {name}: {err}")
    return figures, frames, problems
