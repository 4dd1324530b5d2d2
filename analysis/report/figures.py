"""The report's figures (built with analysis.figures) and the one-line readings under them."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from analysis.figures import (
    c_sweep_figure,
    c_sweep_frame,
    competence_figure,
    competence_frame,
    difficulty_heatmap_figure,
    difficulty_heatmap_frame,
    gradient_cosine_figure,
    gradient_frame,
    gradient_share_figure,
    group_difficulty_figure,
    group_difficulty_frame,
    histogram_frame,
    histogram_grid_figure,
    loss_curves_figure,
    loss_curves_frame,
    loss_ratio_figure,
    loss_ratio_frame,
)
from analysis.report.competence_section import curve_runs as runs_with_curves
from analysis.report.competence_section import run_reading as competence_reading
from analysis.report.markdown import fmt
from analysis.report.numbers import group_medians, ratio_summary, window_mean
from analysis.report.settings import FIGURE_WIDTH, WINDOW
from analysis.report.study import Study, _cfg, component
from analysis.report.table_sections import METRIC_NAMES
from analysis.runs import Run

if TYPE_CHECKING:
    import plotly.graph_objects as go


def _pick(study: Study, *preds) -> Run | None:
    """The first finished run matching the first predicate that matches any (lowest seed)."""
    for pred in preds:
        found = sorted((r for r in study.runs if pred(r)), key=lambda r: (r.seed or 0, r.name))
        if found:
            return found[0]
    return None


def heatmap_example(run: Run, most: int = 48) -> int:
    """The probe example with the longest response of at most `most` tokens (else the shortest)."""
    counts = run.tokens[run.tokens["step"] == run.probe_steps[0]].groupby("example").size()
    fitting = counts[counts <= most]
    # pandas-stubs types index labels as Hashable, which int() does not take; here they are example numbers
    return int(fitting.idxmax() if len(fitting) else counts.idxmin())  # type: ignore[call-overload]


def build_figures(study: Study) -> dict[str, tuple[go.Figure, str]]:
    """{file name: (figure, reading)} for the figures the finished runs allow."""
    figs: dict[str, tuple[go.Figure, str]] = {}
    full = study.full or _pick(study, lambda r: component(r) is not None)
    if full is not None and not full.tokens.empty:
        ex = heatmap_example(full)
        figs["fig1_difficulty_heatmap"] = (
            difficulty_heatmap_figure(
                difficulty_heatmap_frame(full, ex),
                title=f"Fig. 1 top: difficulty per token, {full.label}, probe example {ex}",
            ),
            fig1_top_reading(full, ex),
        )
        figs["fig1_group_bands"] = (
            group_difficulty_figure(
                group_difficulty_frame(full, "paper"),
                title=f"Fig. 1 top: difficulty of hard / mid / easy tokens (r = 0.5 split), {full.label}",
            ),
            group_reading(full),
        )
    # Fig. 1 bottom is the paper's motivation, measured on plain KD; AdaKD's run beside it
    # the reverse-KL ablation's base (lowest seed), not another divergence's plain arm
    base = study.arm("base") or _pick(study, lambda r: component(r) == "base")
    for suffix, run in (("_plain_kd", base), ("", full)):
        if run is None or run.gradients.empty:
            continue
        grads = gradient_frame(run, "paper")
        figs[f"fig1_gradient_cosines{suffix}"] = (
            gradient_cosine_figure(grads, title=f"Fig. 1 bottom (a): cos with the SFT gradient, {run.label}"),
            gradient_reading(grads),
        )
        figs[f"fig1_gradient_shares{suffix}"] = (
            gradient_share_figure(
                grads, title=f"Fig. 1 bottom (b): gradient-norm share and cos with total, {run.label}"
            ),
            share_reading(grads),
        )
    latf_run = (
        full
        if full is not None and _cfg(full, "latf") == "adaptive"
        else _pick(study, lambda r: _cfg(r, "latf") == "adaptive")
    )
    if latf_run is not None:
        figs["fig3a_loss_ratio"] = (
            loss_ratio_figure(
                loss_ratio_frame(latf_run),
                latf_run.events,
                title=f"Fig. 3a: distillation loss and LATF ratio, {latf_run.label}",
            ),
            ratio_reading(latf_run),
        )
    sched = [r for r in study.schedules if _cfg(r, "latf") in ("fixed", "cosine", "linear")]
    curve_runs = (
        [r for r in study.schedules if (r.seed or 0) == 0]
        if sched
        else [r for r in study.ablation if (r.seed or 0) == 0]
    )
    curve_runs = sorted(curve_runs, key=lambda r: r.label)
    if curve_runs:
        what = "LATF vs fixed / cosine r" if sched else "the ablation arms"
        for metric, name in (("kd", "fig3b_loss_curves_kd"), ("ce", "fig3b_loss_curves_ce")):
            frame = loss_curves_frame(curve_runs, metric=metric, smoothing=0.8)
            figs[name] = (
                loss_curves_figure(frame, title=f"Fig. 3b: {METRIC_NAMES[metric]} of {what} (EMA 0.8)"),
                curves_reading(curve_runs, metric, what),
            )
    if study.c_sweep:
        figs["fig3cd_c_sweep"] = (
            c_sweep_figure(c_sweep_frame(study.c_sweep), title="Fig. 3c–d: ROUGE-L against c"),
            "ROUGE-L of the final student against the IDTS strength c (LATF adaptive); see the "
            "table above for the values and the noise level.",
        )
    hist_run = (
        full if full is not None and _cfg(full, "idts") == "on" else _pick(study, lambda r: _cfg(r, "idts") == "on")
    )
    if hist_run is not None and not hist_run.tokens.empty:
        frame = histogram_frame(hist_run)
        figs["fig4_histograms"] = (
            histogram_grid_figure(frame, title=f"Fig. 4: τ and student entropy, hard vs easy, {hist_run.label}"),
            histogram_reading(frame),
        )
    for run in runs_with_curves(study):
        frame = competence_frame(run)
        figs[f"competence_{run.path.parent.name}_{run.name}".replace("=", "-").replace(",", "_")] = (
            competence_figure(frame, title=f"Competence over training: {run.path.parent.name}/{run.name}"),
            competence_reading(frame),
        )
    for fig, _ in figs.values():
        fig.update_layout(width=FIGURE_WIDTH)
    return figs


def fig1_top_reading(run: Run, example: int) -> str:
    frame = difficulty_heatmap_frame(run, example)
    first, last = frame["step"].min(), frame["step"].max()
    a = frame[frame["step"] == first].set_index("token_index")["difficulty"]
    b = frame[frame["step"] == last].set_index("token_index")["difficulty"]
    fell = int((b < a).sum())
    return (
        f"Each row is a response token of probe example {example} ({len(a)} tokens), each "
        f"column a probe step. Between step {first} and step {last} the difficulty of {fell} "
        f"of {len(a)} tokens fell (mean {fmt(float(a.mean()), 3)} → {fmt(float(b.mean()), 3)}); "
        f"the hardest token at the end has s = {fmt(float(b.max()), 3)}, the easiest "
        f"{fmt(float(b.min()), 3)}."
    )


def group_reading(run: Run) -> str:
    med = group_medians(run)
    parts = [f"{g} {fmt(a, 3)} → {fmt(b, 3)}" for g, (a, b) in med.items()]
    return (
        "Median difficulty (lines) with 25–75 % and 10–90 % bands of the probe tokens in the "
        "hard / mid / easy groups at the paper's r = 0.5 split. First → last probe: " + ", ".join(parts) + "."
    )


def _first_last(grads: pd.DataFrame, column: str) -> dict[str, tuple[float, float]]:
    out = {}
    for group in ("hard", "mid", "easy"):
        rows = grads[grads["group"] == group].sort_values("step")
        if len(rows):
            out[group] = (float(rows[column].iloc[0]), float(rows[column].iloc[-1]))
    return out


def gradient_reading(grads: pd.DataFrame) -> str:
    cos = _first_last(grads, "cos_sft")
    parts = ", ".join(f"{g} {fmt(a, 3)} → {fmt(b, 3)}" for g, (a, b) in cos.items())
    easy_mean = float(grads[grads["group"] == "easy"]["cos_sft"].mean()) if "easy" in cos else math.nan
    verdict = (
        "as in the paper, the easy group's divergence gradient points against the SFT gradient on average"
        if easy_mean < 0
        else "unlike the paper's Fig. 1, the easy group's divergence gradient does not conflict "
        "with the SFT gradient on average here"
    )
    return (
        f"cos(group divergence gradient, group SFT gradient), gradients w.r.t. the student "
        f"logits, first → last probe: {parts}. Mean over probes for easy tokens: "
        f"{fmt(easy_mean, 3)}: {verdict}."
    )


def share_reading(grads: pd.DataFrame) -> str:
    share = _first_last(grads, "norm_share")
    tot = _first_last(grads, "cos_total")
    return (
        "Gradient-norm share (%) first → last probe: "
        + ", ".join(f"{g} {fmt(a, 1)} → {fmt(b, 1)}" for g, (a, b) in share.items())
        + "; cos with the full-batch gradient: "
        + ", ".join(f"{g} {fmt(a, 3)} → {fmt(b, 3)}" for g, (a, b) in tot.items())
        + "."
    )


def ema_lag(run: Run) -> str:
    """A sentence when LATF's loss average still lags far behind the recent loss (its memory of
    about 1/(1 − β) steps is as long as the run), else ""."""
    m = run.metrics.dropna(subset=["ema"])
    if m.empty:
        return ""
    ema, recent = float(m["ema"].iloc[-1]), window_mean(run, "kd", "last")
    beta = float(run.config.get("latf_beta", 0.99))
    if not recent > 0 or ema < 1.2 * recent:
        return ""
    return (
        f"With β = {beta:g} the moving average remembers about {1 / (1 - beta):.0f} steps, "
        f"as long as this run: at the last step it is {fmt(ema)} while the KD objective of the "
        f"last {WINDOW} steps averages {fmt(recent)}, so it is still shedding the high loss of "
        "the first steps, and the steady fall of r reflects that as much as progress on the "
        "selected tokens."
    )


def ratio_reading(run: Run) -> str:
    s = ratio_summary(run)
    return (
        f"The KD loss (left axis) and the LATF ratio r (right axis) of {run.label}: r starts "
        f"at {fmt(s['first'])}, changes {s['changes']} times and ends at {fmt(s['last'], 3)} "
        f"(minimum {fmt(s['min'], 3)}). By the controller's rule r moves by δ = "
        f"{run.config.get('latf_delta')} whenever the loss's moving average leaves its reference "
        f"by more than ε = {run.config.get('latf_eps')} (down when it fell, up when it rose). " + ema_lag(run)
    ).rstrip()


def curves_reading(runs: list[Run], metric: str, what: str) -> str:
    finals = ", ".join(f"{r.label} {fmt(window_mean(r, metric, 'last'), 3)}" for r in runs)
    note = (
        " The KD objective differs between arms (selected tokens, per-token τ), so only the shape is comparable."
        if metric == "kd"
        else " Same seed, same batches: the curves differ only by the method."
    )
    return f"{METRIC_NAMES.get(metric, metric)} of {what}, mean of the last {WINDOW} steps: {finals}.{note}"


def histogram_reading(frame: pd.DataFrame) -> str:
    parts = []
    for column in ("early", "late"):
        rows = frame[frame["column"] == column]
        if rows.empty:
            continue
        step = int(rows["step"].iloc[0])
        tau = rows[rows["quantity"] == "tau"].groupby("group")["value"].mean()
        hb = rows[rows["quantity"] == "entropy_before"].groupby("group")["value"].mean()
        ha = rows[rows["quantity"] == "entropy_after"].groupby("group")["value"].mean()
        parts.append(
            f"step {step}: mean τ hard {fmt(tau.get('hard', math.nan), 3)} / easy "
            f"{fmt(tau.get('easy', math.nan), 3)}, student entropy before → after IDTS "
            f"hard {fmt(hb.get('hard', math.nan))} → {fmt(ha.get('hard', math.nan))}, easy "
            f"{fmt(hb.get('easy', math.nan))} → {fmt(ha.get('easy', math.nan))} nats"
        )
    return "IDTS gives hard tokens τ < 1 (sharper) and easy tokens τ > 1 (smoother). " + "; ".join(parts) + "."
