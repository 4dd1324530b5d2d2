"""The student-data panel (analysis.figures.regime) on hand-made runs with known regime fields."""

from __future__ import annotations

import math

import pytest

from analysis import runs as R
from analysis.figures.regime import REGIME_COLUMNS, regime_figure, regime_frame, student_data_note
from tests.rundir_factory import make_metrics, make_run

# (data_source, on_policy, buffer_size, student_data_prob, gen_length) of steps 1..5
REGIME = [
    ("ground_truth", False, 0, 0.0, None),
    ("student", True, 4, 0.1, 5.0),
    ("buffer", False, 4, 0.1, 6.0),
    ("mixed", True, 8, 0.2, 7.0),
    ("ground_truth", False, 8, 0.2, None),
]


def regime_metrics() -> list[dict]:
    records = make_metrics(len(REGIME), {"latf": "off"})
    for record, (source, on_policy, size, prob, length) in zip(records, REGIME, strict=True):
        record.update(
            data_source=source, on_policy=on_policy, buffer_size=size, student_data_prob=prob, gen_length=length
        )
    return records


def test_regime_frame_by_hand(tmp_path):
    path = make_run(
        tmp_path,
        "distillm",
        config={"regime": "distillm"},
        steps=5,
        metrics=regime_metrics(),
        tokens=False,
        gradients=False,
    )
    df = regime_frame(R.load_run(path))
    assert list(df.columns) == REGIME_COLUMNS
    assert df["step"].tolist() == [1, 2, 3, 4, 5]
    assert df["data_source"].tolist() == [r[0] for r in REGIME]
    assert df["on_policy"].tolist() == [False, True, False, True, False]
    assert df["student_data"].tolist() == [False, True, True, True, False]
    # running shares: on-policy 0/1, 1/2, 1/3, 2/4, 2/5; student data 0/1, 1/2, 2/3, 3/4, 3/5
    assert df["on_policy_share"].tolist() == pytest.approx([0, 1 / 2, 1 / 3, 2 / 4, 2 / 5])
    assert df["student_data_share"].tolist() == pytest.approx([0, 1 / 2, 2 / 3, 3 / 4, 3 / 5])
    assert df["buffer_size"].tolist() == [0, 4, 4, 8, 8]
    assert df["student_data_prob"].tolist() == [0.0, 0.1, 0.1, 0.2, 0.2]
    lengths = df["gen_length"].tolist()
    assert math.isnan(lengths[0]) and lengths[1:4] == [5.0, 6.0, 7.0] and math.isnan(lengths[4])

    fig = regime_figure(df, title="t")
    names = [t.name for t in fig.data]
    assert names == [
        "student-data probability",
        "share on-policy",
        "share student data",
        "buffer size",
        "generated length",
    ]
    generated = fig.data[-1]
    assert list(generated.x) == [2, 3, 4] and list(generated.y) == [5.0, 6.0, 7.0]  # sampled steps only


def test_ground_truth_run_has_no_regime_panel(tmp_path):
    path = make_run(tmp_path, "plain", steps=4, tokens=False, gradients=False)
    df = regime_frame(R.load_run(path))
    assert df.empty and list(df.columns) == REGIME_COLUMNS
    fig = regime_figure(df)
    assert not fig.data  # an empty figure with a message, not a chart of nothing


def test_a_flat_student_data_panel_says_why(tmp_path):
    """A DistiLLM run whose φ stayed 0 (every step on ground truth) gets the explanation with its
    own δ and ε; a run with student data, or a ground-truth run, gets none; GKD names its λ_on."""
    flat = [dict(r, data_source="ground_truth", on_policy=False, student_data_prob=0.0) for r in regime_metrics()]
    config = {"regime": "distillm", "distillm_prob_step": 0.2, "distillm_threshold": 0.05}
    path = make_run(tmp_path, "flat", config=config, steps=5, metrics=flat, tokens=False, gradients=False)
    run = R.load_run(path)
    note = student_data_note(regime_frame(run), run.config)
    assert note and "all 5 logged steps" in note and "δ = 0.2" in note and "ε = 0.05 nat" in note
    assert "max 0 here" in note

    used = make_run(tmp_path, "used", config=config, steps=5, metrics=regime_metrics(), tokens=False, gradients=False)
    assert student_data_note(regime_frame(R.load_run(used)), config) is None
    plain = make_run(tmp_path, "plain", steps=4, tokens=False, gradients=False)
    assert student_data_note(regime_frame(R.load_run(plain)), {}) is None

    gkd = make_run(
        tmp_path,
        "gkd",
        config={"regime": "gkd", "gkd_lambda": 0.3},
        steps=5,
        metrics=flat,
        tokens=False,
        gradients=False,
    )
    note = student_data_note(regime_frame(R.load_run(gkd)), R.load_run(gkd).config)
    assert note and "λ_on = 0.3" in note and "DistiLLM" not in note
