"""analysis.figures: every frame on hand-made run dirs with known values (exact numbers),
every figure with its expected traces; the shipped sample runs when there are any."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
from plotly.subplots import make_subplots

from analysis import runs as R
from analysis.figures import (
    c_sweep_figure,
    c_sweep_frame,
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
    token_diff_figure,
    token_diff_frame,
)
from analysis.figures.compare import LOSS_CURVE_COLUMNS, TOKEN_DIFF_COLUMNS
from analysis.figures.dynamics import GROUP_DIFFICULTY_COLUMNS, HEATMAP_COLUMNS, paper_groups
from analysis.figures.gradients import GRADIENT_FRAME_COLUMNS
from analysis.figures.smoothing import ema
from analysis.figures.temperature import HISTOGRAM_COLUMNS
from analysis.runs import load_run
from analysis.style import GROUP_COLORS, apply_style, token_label
from tests.rundir_factory import make_gradients, make_run, tokens_from


@pytest.fixture(autouse=True)
def _fresh_cache():
    R.clear_cache()
    yield


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An AdaKD run: 20 steps, probes at 0, 10, 20 on 2 examples × 8 tokens."""
    R.clear_cache()
    return load_run(make_run(tmp_path_factory.mktemp("fig"), "adakd", steps=20, probe_steps=[0, 10, 20]))


def names(fig: go.Figure) -> list[str]:
    return [trace.name for trace in fig.data]


def is_empty_figure(fig: go.Figure) -> bool:
    return len(fig.data) == 0 and len(fig.layout.annotations) == 1


# ---------------------------------------------------------------- Fig. 1 top: heat map


def test_heatmap_frame_and_figure(run):
    df = difficulty_heatmap_frame(run, example=1)
    assert list(df.columns) == HEATMAP_COLUMNS and len(df) == 8 * 3
    written = run.tokens[run.tokens["example"] == 1]
    merged = df.merge(written, on=["step", "token_index"], suffixes=("", "_w"))
    assert len(merged) == 24 and (merged["difficulty"] == merged["difficulty_w"]).all()
    assert df["token_label"].iloc[0] == "0: The" and df.loc[df["token_index"] == 1, "token_label"].iloc[0] == "1: ␣cat"

    fig = difficulty_heatmap_figure(df)
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Heatmap)
    heat = fig.data[0]
    assert list(heat.x) == [0, 10, 20] and list(heat.y)[:2] == ["0: The", "1: ␣cat"]
    z = np.asarray(heat.z)
    assert z.shape == (8, 3)
    for i in range(8):
        for j, step in enumerate((0, 10, 20)):
            expected = written[(written["token_index"] == i) & (written["step"] == step)]["difficulty"]
            assert z[i, j] == expected.item()
    assert (heat.zmin, heat.zmax) == (0.0, 1.0) and fig.layout.yaxis.autorange == "reversed"


def test_heatmap_unknown_example_says_which_exist(run):
    with pytest.raises(ValueError, match=r"example 5 is not in the probe set of adakd \(examples: 0, 1\)"):
        difficulty_heatmap_frame(run, example=5)


def test_token_label_makes_whitespace_visible():
    assert token_label(3, " on") == "3: ␣on"
    assert token_label(7, "\n\t") == "7: ↵⇥"


# ---------------------------------------------------------------- Fig. 1 top: group bands


def test_group_difficulty_percentiles_equal_numpy(run):
    df = group_difficulty_frame(run)
    assert list(df.columns) == GROUP_DIFFICULTY_COLUMNS
    # step 0 at r = 1 has no easy group; steps 10 and 20 have all three
    assert df[df["step"] == 0]["group"].tolist() == ["hard", "mid"]
    assert df[df["step"] == 10]["group"].tolist() == ["hard", "mid", "easy"]
    for row in df.itertuples():
        values = run.tokens[(run.tokens["step"] == row.step) & (run.tokens["group"] == row.group)]
        s = values["difficulty"].to_numpy()
        assert row.n == len(s)
        for name, q in (("p10", 10), ("p25", 25), ("median", 50), ("p75", 75), ("p90", 90)):
            assert getattr(row, name) == np.percentile(s, q)
    assert df.groupby("step")["n"].sum().tolist() == [16, 16, 16]


def test_group_difficulty_paper_split_by_hand(tmp_path):
    s = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.05, 0.6]  # 8 tokens, r = 0.5: k = 4
    run = load_run(make_run(tmp_path, "hand", tokens=tokens_from(difficulty=s, group=["mid"] * 8)))
    df = group_difficulty_frame(run, split="paper").set_index("group")
    # hard = top ceil(4/2) = 2: 0.9, 0.7; mid = next 2: 0.6, 0.5; easy = 0.3, 0.2, 0.1, 0.05
    assert df.loc["hard", "n"] == 2 and df.loc["hard", "median"] == pytest.approx(0.8)
    assert df.loc["mid", "n"] == 2 and df.loc["mid", "median"] == pytest.approx(0.55)
    assert df.loc["easy", "n"] == 4 and df.loc["easy", "median"] == pytest.approx(0.15)
    current = group_difficulty_frame(run, split="current")
    assert current["group"].tolist() == ["mid"] and current["n"].tolist() == [8]
    with pytest.raises(ValueError, match="split must be"):
        group_difficulty_frame(run, split="tertiles")


def test_paper_groups_match_the_probes_rule():
    from adakd.training.probes import group_labels  # the rule the trainer writes groups with

    rng = np.random.default_rng(0)
    for n, ratio in ((1, 0.5), (2, 0.5), (7, 0.5), (16, 0.5), (33, 0.3), (10, 1.0)):
        s = rng.uniform(size=n)
        _, expected = group_labels(torch.tensor(s, dtype=torch.float32), ratio)
        assert paper_groups(s, ratio).tolist() == expected.tolist()


def test_group_difficulty_figure_traces(run):
    df = group_difficulty_frame(run)
    fig = group_difficulty_figure(df)
    expected = []
    for group in ("hard", "mid", "easy"):
        expected += [f"{group} p10", f"{group} p10–p90", f"{group} p25", f"{group} p25–p75", f"{group} median"]
    assert names(fig) == expected
    hard = df[df["group"] == "hard"]
    median = next(t for t in fig.data if t.name == "hard median")
    assert list(median.y) == hard["median"].tolist() and median.line.color == GROUP_COLORS["hard"]
    band = next(t for t in fig.data if t.name == "easy p25–p75")
    assert band.fill == "tonexty" and list(band.y) == df[df["group"] == "easy"]["p75"].tolist()


# ---------------------------------------------------------------- Fig. 3a


def test_loss_ratio_frame_and_figure(run):
    df = loss_ratio_frame(run)
    assert list(df.columns) == ["step", "loss", "kd", "ce", "ratio", "next_ratio", "mean_tau"]
    assert df["kd"].tolist() == pytest.approx([3 / (1 + 0.1 * s) for s in range(1, 21)])
    assert df["ratio"].tolist()[4:7] == [1.0, 0.95, 0.95]

    fig = loss_ratio_figure(df, events=run.events)
    assert names(fig) == ["kd", "ratio r", "ratio change"]
    ratio, change = fig.data[1], fig.data[2]
    assert ratio.yaxis == "y2" and ratio.line.shape == "hv"
    # changes logged after steps 5, 10, 15; the new r is used from the next step
    assert list(change.x) == [6, 11, 16] and list(change.y) == [0.95, 0.9, 0.85]
    assert change.yaxis == "y2"
    assert names(loss_ratio_figure(df)) == ["kd", "ratio r"]
    with pytest.raises(ValueError, match="unknown metric 'nll'; choose one of loss, kd, ce"):
        loss_ratio_figure(df, metric="nll")


def test_loss_ratio_marks_skipped_steps_and_falls_back_to_loss(tmp_path):
    metrics = [{"step": s, "loss": 10.0 - s, "ratio": 1.0} for s in (1, 2, 4)]
    events = [{"step": 3, "kind": "skipped_step", "message": "non-finite loss", "reason": "nan"}]
    run = load_run(make_run(tmp_path, "skip", metrics=metrics, events=events))
    fig = loss_ratio_figure(loss_ratio_frame(run), events=run.events)
    assert names(fig) == ["loss", "ratio r", "skipped step"]
    assert list(fig.data[2].x) == [3] and list(fig.data[2].y) == [7.0]  # between 8 (step 2) and 6 (step 4)


def test_loss_ratio_smoothing_is_bias_corrected_and_keeps_the_raw_values(tmp_path):
    """Loss 4, 2, (missing), 0 at steps 1, 2, 3, 4 with w = 0.5, by hand over the logged steps:
    m = 2, 2, 1 → 2/0.5 = 4; 2/0.75 = 2.667; 1/0.875 = 1.143."""
    metrics = [{"step": 1, "loss": 4.0, "ratio": 1.0}, {"step": 2, "loss": 2.0, "ratio": 1.0}]
    metrics += [{"step": 3, "ratio": 1.0}, {"step": 4, "loss": 0.0, "ratio": 0.9}]
    run = load_run(make_run(tmp_path, "smooth", metrics=metrics))
    df = loss_ratio_frame(run)
    fig = loss_ratio_figure(df, metric="loss", smoothing=0.5)
    assert names(fig) == ["loss", "ratio r", "loss, raw"]
    assert list(fig.data[0].x) == [1, 2, 4]
    assert list(fig.data[0].y) == pytest.approx([4.0, 2 / 0.75, 1 / 0.875])
    assert list(fig.data[2].y) == [4.0, 2.0, 0.0] and fig.data[2].opacity < 1
    assert list(fig.data[1].y) == [1.0, 1.0, 1.0, 0.9]  # r is never smoothed
    assert list(loss_ratio_figure(df, metric="loss").data[0].y) == [4.0, 2.0, 0.0]
    with pytest.raises(ValueError, match=r"smoothing must be in \[0, 1\)"):
        loss_ratio_figure(df, metric="loss", smoothing=1.0)


# ---------------------------------------------------------------- Fig. 1 bottom


def test_gradient_frame_keeps_one_split_in_group_order(run):
    paper = gradient_frame(run)  # default split: paper
    assert list(paper.columns) == GRADIENT_FRAME_COLUMNS
    assert set(paper["split"]) == {"paper"} and len(paper) == 9
    assert paper["group"].tolist() == ["hard", "mid", "easy"] * 3
    assert paper.groupby("step")["norm_share"].sum().tolist() == pytest.approx([100.0] * 3)
    assert paper["norm_share"].tolist()[:3] == pytest.approx([50.0, 100 / 3, 50 / 3])
    current = gradient_frame(run, split="current")
    assert current["group"].tolist() == ["hard", "mid"] + ["hard", "mid", "easy"] * 2
    assert current.groupby("step")["norm_share"].sum().tolist() == pytest.approx([100.0] * 3)
    assert current["norm_share"].tolist()[:2] == pytest.approx([60.0, 40.0])  # 3 / 5, 2 / 5
    with pytest.raises(ValueError, match='split must be "paper" or "current"'):
        gradient_frame(run, split="both")


def test_gradient_figures(run):
    df = gradient_frame(run)
    fig = gradient_cosine_figure(df)
    assert names(fig) == ["hard", "mid", "easy"]
    assert list(fig.data[2].y) == pytest.approx([-0.2, -0.21, -0.22])  # −0.2 − step/1000
    assert [t.line.color for t in fig.data] == [GROUP_COLORS[g] for g in ("hard", "mid", "easy")]
    assert any(s.y0 == 0 and s.y1 == 0 and s.line.dash == "dash" for s in fig.layout.shapes)

    fig = gradient_share_figure(df)
    assert names(fig) == ["hard", "hard", "mid", "mid", "easy", "easy"]
    shares = [t for t in fig.data if t.xaxis == "x"]
    cosines = [t for t in fig.data if t.xaxis == "x2"]
    assert [y for t in shares for y in t.y] == pytest.approx([50.0] * 3 + [100 / 3] * 3 + [50 / 3] * 3)
    assert [y for t in cosines for y in t.y] == pytest.approx([0.75] * 3 + [0.5] * 3 + [0.25] * 3)
    assert [t.showlegend for t in cosines] == [False] * 3


# ---------------------------------------------------------------- Fig. 4


def _fig4_run(tmp_path):
    # step 0: 4 tokens; step 10: 3 tokens (one with a missing entropy after IDTS)
    tokens = tokens_from(
        step=[0, 0, 0, 0, 10, 10, 10],
        token_index=[0, 1, 2, 3, 0, 1, 2],
        tau_all=[0.8, 0.9, 1.2, 1.3, 0.7, 1.1, 1.4],
        entropy_student=[3.0, 2.0, 1.0, 0.5, 2.5, 1.5, 0.25],
        entropy_student_idts=[2.0, 1.8, 1.2, 0.6, 1.5, 1.6, float("nan")],
        hard=[True, True, False, False, True, False, False],
    )
    return load_run(make_run(tmp_path, "fig4", tokens=tokens))


def test_histogram_frame_by_hand(tmp_path):
    run = _fig4_run(tmp_path)
    df = histogram_frame(run, view="all")
    assert list(df.columns) == HISTOGRAM_COLUMNS
    assert len(df) == 4 * 3 + 3 * 3 - 1  # the NaN entropy is left out
    tau = df[(df["quantity"] == "tau") & (df["column"] == "early")]
    assert tau["value"].tolist() == [0.8, 0.9, 1.2, 1.3]
    assert tau["group"].tolist() == ["hard", "hard", "easy", "easy"]
    assert set(df[df["column"] == "late"]["step"]) == {10}
    with pytest.raises(ValueError, match="step 5 has no probe rows in fig4; probe steps: 0, 10"):
        histogram_frame(run, late_step=5)
    same = histogram_frame(run, early_step=10, late_step=10, view="all")
    assert set(same["step"]) == {10}
    with pytest.raises(ValueError, match="view must be one of selected, all"):
        histogram_frame(run, view="hard")


def test_fig4_selected_view_splits_the_selected_tokens_at_their_lower_median(tmp_path):
    """The paper's Fig. 4: selected tokens only, hard = s > lower median of the selected s,
    τ = the temperature they train at, entropy after = H at that τ."""
    tokens = tokens_from(
        step=[0] * 5 + [10] * 4,
        token_index=[0, 1, 2, 3, 4, 0, 1, 2, 3],
        difficulty=[0.1, 0.4, 0.3, 0.2, 0.9, 0.5, 0.6, 0.7, 0.05],
        selected=[True, True, True, True, False, True, True, True, False],
        tau=[1.2, 0.8, 0.9, 1.1, float("nan"), 1.1, 1.0, 0.9, float("nan")],
        entropy_student=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        entropy_student_tau=[1.5, 1.9, 2.8, 4.4, float("nan"), 6.5, 7.0, 7.6, float("nan")],
        tau_all=[1.0] * 9,
        entropy_student_idts=[1.0] * 9,
        hard=[False] * 9,
    )
    df = histogram_frame(load_run(make_run(tmp_path, "sel", tokens=tokens)))
    early = df[(df["column"] == "early") & (df["quantity"] == "tau")]
    # step 0: selected s = 0.1, 0.4, 0.3, 0.2 -> lower median 0.2 -> hard: 0.4, 0.3; the unselected 0.9 is out
    assert early["token_index"].tolist() == [0, 1, 2, 3]
    assert early["group"].tolist() == ["easy", "hard", "hard", "easy"]
    assert early["value"].tolist() == [1.2, 0.8, 0.9, 1.1]
    late = df[(df["column"] == "late") & (df["quantity"] == "entropy_after")]
    # step 10: selected s = 0.5, 0.6, 0.7 -> median 0.6 -> hard: 0.7 only
    assert late["group"].tolist() == ["easy", "easy", "hard"] and late["value"].tolist() == [6.5, 7.0, 7.6]


def test_histogram_grid_counts_and_mean_lines(tmp_path):
    df = histogram_frame(_fig4_run(tmp_path), view="all")
    fig = histogram_grid_figure(df, bins=5)
    assert len(fig.data) == 12 and all(isinstance(t, go.Bar) for t in fig.data)
    assert names(fig) == ["hard", "easy"] * 6
    assert [t.showlegend for t in fig.data] == [True, True] + [False] * 10
    # counts sum to the tokens of that group, step and quantity
    expected_counts = [
        2,
        2,
        1,
        2,  # tau: early hard/easy, late hard/easy
        2,
        2,
        1,
        2,  # entropy before
        2,
        2,
        1,
        1,
    ]  # entropy after (one NaN left out)
    assert [int(sum(t.y)) for t in fig.data] == expected_counts
    # each row shares its bins: same bar positions in both columns
    for row in range(3):
        traces = fig.data[4 * row : 4 * row + 4]
        assert all(list(t.x) == list(traces[0].x) for t in traces)
    # dashed lines at the group means, hand-computed
    means = [0.85, 1.25, 0.7, 1.25, 2.5, 0.75, 2.5, 0.875, 1.9, 0.9, 1.5, 1.6]
    lines = fig.layout.shapes
    assert len(lines) == 12 and all(s.line.dash == "dash" for s in lines)
    assert [s.x0 for s in lines] == pytest.approx(means)
    assert [s.line.color for s in lines] == [GROUP_COLORS["hard"], GROUP_COLORS["easy"]] * 6
    assert fig.layout.annotations[0].text == "before training (step 0)"
    assert fig.layout.annotations[1].text == "late (step 10)"


def test_histogram_counts_equal_token_counts_on_a_generated_run(run):
    df = histogram_frame(run, view="all")
    fig = histogram_grid_figure(df)
    for trace, (column, group) in zip(
        fig.data[:4], [("early", "hard"), ("early", "easy"), ("late", "hard"), ("late", "easy")], strict=True
    ):
        step = 0 if column == "early" else 20
        rows = run.tokens[(run.tokens["step"] == step) & (run.tokens["hard"] == (group == "hard"))]
        assert sum(trace.y) == len(rows)
        counts, _ = np.histogram(
            rows["tau_all"], bins=np.histogram_bin_edges(df[df["quantity"] == "tau"]["value"], bins=30)
        )
        assert list(trace.y) == counts.tolist()


# ---------------------------------------------------------------- Fig. 3b


def test_loss_curves_frame_values_and_smoothing(tmp_path):
    a = load_run(make_run(tmp_path, "a", metrics=[{"step": s, "kd": v} for s, v in ((1, 1.0), (2, 2.0), (3, 4.0))]))
    b = load_run(make_run(tmp_path, "b", steps=5, loss_scale=2.0, config={"latf": "off", "idts": "off"}))
    df = loss_curves_frame([a, b], smoothing=0.5)
    assert list(df.columns) == LOSS_CURVE_COLUMNS
    rows_a = df[df["run"] == "a"]
    assert rows_a["value"].tolist() == [1.0, 2.0, 4.0]
    # bias-corrected EMA by hand, w = 0.5: weights w^{t-i} normalised over the values so far
    # t=0: 1; t=1: (0.5·1 + 2)/1.5 = 5/3; t=2: (0.25·1 + 0.5·2 + 4)/1.75 = 3
    assert rows_a["smoothed"].tolist() == pytest.approx([1.0, 5 / 3, 3.0])
    rows_b = df[df["run"] == "b"]
    assert rows_b["value"].tolist() == pytest.approx([6 / (1 + 0.1 * s) for s in range(1, 6)])
    assert set(df["legend"]) == {"rkl + AdaKD", "rkl"}
    assert ema(np.array([2.0, 0.0]), 0.0).tolist() == [2.0, 0.0]
    with pytest.raises(ValueError, match=r"smoothing must be in \[0, 1\)"):
        loss_curves_frame([a], smoothing=1.0)
    with pytest.raises(ValueError, match="unknown metric 'nope'"):
        loss_curves_frame([a], metric="nope")


def test_loss_curves_figure_one_line_per_run(tmp_path):
    runs = [load_run(make_run(tmp_path, f"s{seed}", config={"seed": seed}, loss_scale=1 + seed)) for seed in (0, 1)]
    runs.append(load_run(make_run(tmp_path, "fixed", config={"latf": "fixed", "ratio_start": 0.75, "idts": "off"})))
    runs.append(load_run(make_run(tmp_path, "no-metrics", metrics=False)))
    df = loss_curves_frame(runs)
    fig = loss_curves_figure(df)
    assert names(fig) == ["rkl + AdaKD · seed 0", "rkl + AdaKD · seed 1", "rkl + fixed r=0.75"]
    smooth = loss_curves_figure(loss_curves_frame(runs, smoothing=0.6))
    assert len(smooth.data) == 6
    assert names(smooth)[:2] == ["rkl + AdaKD · seed 0 (raw)", "rkl + AdaKD · seed 0"]
    # identical curves stay distinguishable: colour, dash and marker differ per run
    assert len({t.line.color for t in fig.data}) == 3
    assert len({t.line.dash for t in fig.data}) == 3 and len({t.marker.symbol for t in fig.data}) == 3
    assert fig.layout.hovermode == "x unified" and fig.layout.yaxis.type == "linear"
    assert loss_curves_figure(df, log_y=True).layout.yaxis.type == "log"


def test_ema_is_bias_corrected():
    """A constant stays constant from the first step (no lag), w = 0 is the identity, and each
    value is the normalised w^{t-i}-weighted mean of the values so far."""
    assert ema(np.full(5, 3.0), 0.9) == pytest.approx(np.full(5, 3.0))
    values = np.array([4.0, 1.0, 7.0, 2.0])
    assert ema(values, 0.0).tolist() == values.tolist()
    w = 0.8
    expected = [sum(w ** (t - i) * values[i] for i in range(t + 1)) / sum(w**k for k in range(t + 1)) for t in range(4)]
    assert ema(values, w) == pytest.approx(expected)


def test_loss_curves_mean_and_std_over_seeds(tmp_path):
    """Two seeds of one method (loss scales 1 and 3) and another method: the seeds become one mean
    line with a ± std band at their shared steps; the other method keeps its own line."""
    runs = [
        load_run(make_run(tmp_path, f"s{seed}", config={"seed": seed}, steps=4, loss_scale=scale))
        for seed, scale in ((0, 1.0), (1, 3.0))
    ]
    runs.append(load_run(make_run(tmp_path, "plain", config={"latf": "off", "idts": "off"}, steps=4)))
    df = loss_curves_frame(runs)
    fig = loss_curves_figure(df, aggregate_seeds=True)
    assert names(fig) == ["rkl + AdaKD (mean ± std, 2 seeds) (± std)", "rkl + AdaKD (mean ± std, 2 seeds)", "rkl"]
    a, b = (df[df["run"] == n]["value"].to_numpy() for n in ("s0", "s1"))
    mean = fig.data[1]
    assert list(mean.y) == pytest.approx((a + b) / 2)
    std = np.abs(a - b) / np.sqrt(2)  # sample std of two values
    band = np.array(fig.data[0].y)
    assert band[:4] == pytest.approx((a + b) / 2 + std)
    assert band[4:] == pytest.approx(((a + b) / 2 - std)[::-1])


def test_adding_a_run_keeps_the_other_runs_curves(tmp_path):
    """loss_curves_frame is the per-run curves with legends: the same rows as each run's own
    run_curve (what the Compare page caches per run)."""
    from analysis.figures.compare import run_curve, with_legends

    runs = [load_run(make_run(tmp_path, n, config={"seed": i}, steps=5)) for i, n in enumerate("ab")]
    whole = loss_curves_frame(runs, smoothing=0.3)
    parts = with_legends([run_curve(r, "kd", 0.3) for r in runs])
    pd.testing.assert_frame_equal(whole, parts)
    assert run_curve(runs[0], "no-such-metric", 0.0).empty  # a run that never logged it is left out


# ---------------------------------------------------------------- Fig. 3c–d


def test_c_sweep_mean_and_std_over_seeds(tmp_path):
    scores = {
        (0.1, 0): {"d1": 30.0, "d2": 20.0},
        (0.1, 1): {"d1": 32.0, "d2": 22.0},
        (0.5, 0): {"d1": 35.0, "d2": 25.0},
    }
    runs = [
        load_run(make_run(tmp_path, f"c{c}-s{seed}", config={"idts_c": c, "seed": seed}, final_rouge=rouge))
        for (c, seed), rouge in scores.items()
    ]
    runs.append(
        load_run(
            make_run(tmp_path, "no-idts", config={"idts": "off", "idts_c": 0.1}, final_rouge={"d1": 0.0, "d2": 0.0})
        )
    )
    runs.append(
        load_run(
            make_run(tmp_path, "live", state="running", config={"idts_c": 0.1}, final_rouge={"d1": 0.0, "d2": 0.0})
        )
    )
    df = c_sweep_frame(runs)
    assert list(df.columns) == ["method", "c", "dataset", "rouge_l_mean", "rouge_l_std", "n_seeds"]
    assert set(df["method"]) == {"rkl + AdaKD"}  # c is not part of the method
    assert df["dataset"].tolist() == ["d1", "d1", "d2", "d2", "average", "average"]
    table = df.set_index(["dataset", "c"])
    assert table.loc[("d1", 0.1), "rouge_l_mean"] == 31.0
    assert table.loc[("d1", 0.1), "rouge_l_std"] == pytest.approx(math.sqrt(2))  # ddof = 1
    assert table.loc[("average", 0.1), "rouge_l_mean"] == 26.0
    assert table.loc[("average", 0.1), "n_seeds"] == 2
    assert table.loc[("d2", 0.5), "rouge_l_mean"] == 25.0
    assert np.isnan(table.loc[("d2", 0.5), "rouge_l_std"]) and table.loc[("d2", 0.5), "n_seeds"] == 1
    assert c_sweep_frame(runs, finished_only=False).set_index(["dataset", "c"]).loc[("d1", 0.1), "n_seeds"] == 3

    fig = c_sweep_figure(df)
    assert names(fig) == ["d1", "d2", "average"]  # one method: traces named by dataset
    assert [t.xaxis for t in fig.data] == ["x", "x", "x2"]
    assert list(fig.data[2].y) == [26.0, 30.0]
    assert list(fig.data[0].error_y.array) == pytest.approx([math.sqrt(2), 0.0])


def test_c_sweep_never_pools_two_methods(tmp_path):
    """rkl + IDTS (LATF off) and rkl + AdaKD at the same c are two points, not one spread."""
    runs = [
        load_run(make_run(tmp_path, name, config={"idts_c": c, **config}, final_rouge={"d1": score}))
        for name, c, config, score in (
            ("full-0.5", 0.5, {}, 30.0),
            ("full-0.1", 0.1, {}, 28.0),
            ("idts-0.5", 0.5, {"latf": "off"}, 20.0),
        )
    ]
    df = c_sweep_frame(runs)
    average = df[df["dataset"] == "average"]
    assert average[["method", "c", "rouge_l_mean", "n_seeds"]].values.tolist() == [
        ["rkl + AdaKD", 0.1, 28.0, 1],
        ["rkl + AdaKD", 0.5, 30.0, 1],
        ["rkl + IDTS", 0.5, 20.0, 1],
    ]
    fig = c_sweep_figure(df)
    assert names(fig) == ["d1 · rkl + AdaKD", "average · rkl + AdaKD", "d1 · rkl + IDTS", "average · rkl + IDTS"]
    assert {t.line.dash for t in fig.data} == {"solid", "dash"}


# ---------------------------------------------------------------- token-level diff


def test_token_diff_by_hand(tmp_path):
    a_tokens = pd.concat(
        [
            tokens_from(step=[10] * 4, difficulty=[0.9, 0.1, 0.5, 0.3], hard=[True, False, True, False]),
            tokens_from(step=[20] * 4),
        ]
    )
    b_tokens = tokens_from(step=[10] * 4, difficulty=[0.2, 0.05, 0.6, 0.7], hard=[False, False, True, True])
    a = load_run(make_run(tmp_path, "plain", tokens=a_tokens))
    b = load_run(make_run(tmp_path, "ada", tokens=b_tokens))
    df = token_diff_frame(a, b)  # last common probe step: 10
    assert list(df.columns) == TOKEN_DIFF_COLUMNS
    assert set(df["step"]) == {10} and (df["run_a"] == "plain").all() and (df["run_b"] == "ada").all()
    assert df["difference"].tolist() == pytest.approx([-0.7, -0.05, 0.1, 0.4])
    assert df["status"].tolist() == ["hard only in A", "easy in both", "hard in both", "hard only in B"]
    assert df["token_label"].iloc[1] == "ex 0 · 1: ␣cat"

    fig = token_diff_figure(df, top=3)
    assert names(fig) == ["hard in both", "hard only in A", "hard only in B", "easy in both", "difficulty B − A"]
    bars = fig.data[-1]
    assert list(bars.y) == ["ex 0 · 2: ␣sat", "ex 0 · 3: ␣on", "ex 0 · 0: The"]  # |Δ| ascending
    assert list(bars.x) == pytest.approx([0.1, 0.4, -0.7])

    with pytest.raises(ValueError, match="step 20 is not a probe step of both runs"):
        token_diff_frame(a, b, step=20)
    other = load_run(make_run(tmp_path, "other", tokens=tokens_from(step=[30, 30])))
    with pytest.raises(ValueError, match="share no probe step"):
        token_diff_frame(a, other)
    shifted = load_run(make_run(tmp_path, "shifted", tokens=tokens_from(step=[10, 10], token_id=[7, 8])))
    with pytest.raises(ValueError, match="no probe token in common"):
        token_diff_frame(a, shifted)


def test_token_diff_on_generated_runs(tmp_path):
    a = load_run(make_run(tmp_path, "a", steps=20, probe_steps=[0, 10, 20]))
    b = load_run(make_run(tmp_path, "b", steps=30, probe_steps=[0, 10, 30], token_seed=5))
    df = token_diff_frame(a, b)
    assert set(df["step"]) == {10} and len(df) == 16
    merged = df.merge(b.tokens[b.tokens["step"] == 10], on=["example", "token_index"])
    assert (merged["difficulty_b"] == merged["difficulty"]).all()
    assert df["hard_a"].sum() == 8 and df["hard_b"].sum() == 8  # above the median of 16


# ---------------------------------------------------------------- empty runs and styling


def test_runs_without_data_give_empty_frames_and_explaining_figures(tmp_path):
    run = load_run(make_run(tmp_path, "bare", metrics=False, tokens=False, gradients=False, evals=False))
    pairs = [
        (difficulty_heatmap_frame(run), difficulty_heatmap_figure),
        (group_difficulty_frame(run), group_difficulty_figure),
        (loss_ratio_frame(run), loss_ratio_figure),
        (gradient_frame(run), gradient_cosine_figure),
        (gradient_frame(run), gradient_share_figure),
        (histogram_frame(run), histogram_grid_figure),
        (loss_curves_frame([run]), loss_curves_figure),
        (c_sweep_frame([run]), c_sweep_figure),
    ]
    for frame, figure in pairs:
        assert frame.empty, figure.__name__
        assert is_empty_figure(figure(frame)), figure.__name__
    with pytest.raises(ValueError, match="share no probe step"):
        token_diff_frame(run, run)


def test_apply_style():
    fig = apply_style(go.Figure(go.Scatter(x=[0, 1], y=[1, 2])), title="T")
    assert fig.layout.title.text == "T" and fig.layout.font.size == 14
    assert fig.layout.template.layout.paper_bgcolor == "white"
    assert fig.layout.xaxis.showline and fig.layout.yaxis.ticks == "outside"
    assert GROUP_COLORS == {"hard": "#1f77b4", "mid": "#7f7f7f", "easy": "#ff7f0e"}


def test_apply_style_leaves_a_secondary_y_axis_visible():
    # mirrored y axis lines would draw over the right-hand axis of a twin-axis figure
    twin = apply_style(make_subplots(specs=[[{"secondary_y": True}]]), secondary_y=True)
    assert twin.layout.yaxis.mirror is False and twin.layout.yaxis2.mirror is False
    assert twin.layout.xaxis.mirror is True and twin.layout.yaxis.showline
    assert apply_style(go.Figure()).layout.yaxis.mirror is True


def test_generated_gradients_match_the_contract():
    frame = make_gradients([0, 50])
    assert set(frame.columns) == set(R.GRADIENT_COLUMNS)


# ---------------------------------------------------------------- the shipped sample runs


def test_every_figure_on_sample_runs():
    paths = R.find_runs([R.SAMPLE_RUNS_DIR])
    if not paths:
        pytest.skip("sample_runs/ holds no runs yet")
    runs = R.load_runs(paths)
    probed = [r for r in runs if not r.tokens.empty][:2]
    for run in probed:
        assert not difficulty_heatmap_frame(run, int(run.tokens["example"].min())).empty
        assert len(group_difficulty_figure(group_difficulty_frame(run, "paper")).data) >= 10
        assert names(gradient_cosine_figure(gradient_frame(run)))[:3] == ["hard", "mid", "easy"]
        assert len(histogram_grid_figure(histogram_frame(run)).data) >= 8
        assert {"ratio r"} <= set(names(loss_ratio_figure(loss_ratio_frame(run), run.events)))
    lines = [t for t in loss_curves_figure(loss_curves_frame(runs[:4])).data if not t.name.endswith("stop / resume")]
    assert len(lines) == min(4, len(runs))  # one per run (ticks mark the sample run that was stopped at step 1)
    if len(probed) == 2:
        assert not token_diff_frame(*probed).empty
    scored = [r for r in runs if r.config.get("idts") == "on" and r.state == "finished" and not r.final_eval().empty]
    if scored:
        assert len(c_sweep_figure(c_sweep_frame(scored)).data) >= 2


# ---------------------------------------------------------------- real writers, real probes


class _IdTokenizer:
    """Just what adakd.training.probes needs to decode single tokens."""

    def decode(self, ids, **kwargs):
        return "".join(f" t{i}" for i in ids)


def test_run_written_by_the_trainers_writers_and_probes(tmp_path):
    """tokens/gradients from adakd.training.probes on tiny random models, files from adakd.runs.rundir:
    the run loads without problems and every figure has data (guards the contract)."""
    from adakd.models.loading import tiny_random_llama
    from adakd.runs.rundir import EVAL, METRICS, RunDir
    from adakd.training.probes import probe_gradient_groups, probe_tokens

    teacher = tiny_random_llama(61, layers=1, hidden=16, seed=1).eval()
    student = tiny_random_llama(61, layers=1, hidden=16, seed=2).train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 61, (2, 12), generator=g)
    labels = ids.clone()
    labels[:, :4] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    rd = RunDir(tmp_path / "real")
    rd.create()
    rd.write_json(
        "config.json",
        {
            "format": 1,
            "name": "real",
            "preset": None,
            "seed": 0,
            "config": {"divergence": "rkl", "latf": "adaptive", "idts": "on", "idts_c": 0.5, "seed": 0},
        },
    )
    tokens, gradients = [], []
    for step, ratio in ((0, 1.0), (2, 0.8)):
        with torch.no_grad():  # a different student at the second probe
            for p in student.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        tokens.append(
            probe_tokens(student, teacher, batch, _IdTokenizer(), step=step, ratio=ratio, c=0.5, base_temperature=1.0)
        )
        gradients.append(probe_gradient_groups(student, teacher, batch, step=step, ratio=ratio, divergence="rkl"))
        rd.write_parquet("tokens.parquet", pd.concat(tokens, ignore_index=True))
        rd.write_parquet("gradients.parquet", pd.concat(gradients, ignore_index=True))
    for step in (1, 2):
        rd.append(
            METRICS,
            {
                "step": step,
                "loss": 2.0 / step,
                "kd": 2.0 / step,
                "ce": 3.0,
                "ratio": 1.0 if step == 1 else 0.8,
                "mean_tau": 1.0,
            },
        )
    rd.event(1, "ratio_change", "r 1 -> 0.8", old=1.0, new=0.8)
    rd.append(EVAL, {"step": 2, "model": "student", "rouge_l": {"x": 12.5}, "rouge_l_avg": 12.5, "n": {"x": 2}})
    rd.set_status("finished", step=2, total_steps=2)

    run = load_run(rd.path)
    assert run.problems == [] and run.state == "finished" and run.probe_steps == [0, 2]
    assert len(run.tokens) == 2 * 2 * 8  # two probes × two examples × 8 response tokens
    heat = difficulty_heatmap_frame(run, example=1)
    assert len(heat) == 16 and heat["token_label"].iloc[0].startswith("0: ␣t")
    assert len(difficulty_heatmap_figure(heat).data) == 1
    assert not group_difficulty_frame(run, "paper").empty
    paper = gradient_frame(run)
    assert paper.groupby("step")["norm_share"].sum().tolist() == pytest.approx([100.0, 100.0])
    assert names(gradient_cosine_figure(paper)) == ["hard", "mid", "easy"]
    hist = histogram_frame(run, view="all")
    assert len(hist) == 2 * 3 * 16
    n_selected = run.tokens.groupby("step")["selected"].sum().tolist()
    assert len(histogram_frame(run)) == 3 * sum(n_selected) and n_selected[1] < 16  # only LATF's picks
    assert len(histogram_grid_figure(hist).data) == 12
    assert names(loss_ratio_figure(loss_ratio_frame(run), run.events)) == ["kd", "ratio r", "ratio change"]
    assert len(token_diff_frame(run, run)) == 16
    assert c_sweep_frame([run])["rouge_l_mean"].tolist() == [12.5, 12.5]
