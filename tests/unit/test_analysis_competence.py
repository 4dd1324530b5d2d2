"""The competence curve (analysis/figures/competence.py) on hand-made runs with known values."""

from __future__ import annotations

import pytest

from analysis.figures.competence import COMPETENCE_COLUMNS, competence_figure, competence_frame
from analysis.report.competence_section import competence_section, curve_runs, knee_step, run_reading
from analysis.report.study import collect_study
from analysis.runs import clear_cache, load_run
from tests.rundir_factory import eval_record, make_run, make_sweep


def _record(step: int, model: str, ce: float, degenerate: float, kl: float | None, rouge: float) -> dict:
    record = eval_record(step, model, {"chatterbot": rouge})
    for key, value in (("ce", ce), ("degenerate", degenerate), ("kl_teacher", kl)):
        record[key], record[f"{key}_avg"] = {"chatterbot": value}, value  # as the trainer writes them
    return record


def test_gap_closed_minutes_and_degenerate_share_per_evaluation(tmp_path):
    evals = [
        _record(0, "teacher", 2.0, 0.0, None, 12.0),
        _record(0, "student_init", 5.0, 0.05, 3.0, 6.0),
        _record(5, "student", 4.0, 0.10, 2.5, 8.0),
        _record(10, "student", 3.0, 0.02, 2.0, 10.0),
    ]
    # make_metrics writes step_seconds 0.2 for every step
    clear_cache()
    df = competence_frame(load_run(make_run(tmp_path, "curve", steps=10, evals=evals)))
    assert list(df.columns) == COMPETENCE_COLUMNS
    assert df["step"].tolist() == [0, 5, 10]
    # (CE_init − CE_s) / (CE_init − CE_teacher) = 0, 1/3, 2/3 by hand
    assert df["gap_closed"].tolist() == pytest.approx([0.0, 1 / 3, 2 / 3])
    assert df["minutes"].tolist() == pytest.approx([0.0, 5 * 0.2 / 60, 10 * 0.2 / 60])
    assert df["degenerate"].tolist() == pytest.approx([0.05, 0.10, 0.02])
    assert df["kl_teacher"].tolist() == pytest.approx([3.0, 2.5, 2.0])
    assert set(df["teacher_ce"]) == {2.0} and set(df["init_ce"]) == {5.0}
    figure = competence_figure(df, "curve")
    names = [trace.name for trace in figure.data]
    assert "student CE" in names and "CE gap closed (%)" in names
    gap_trace = next(trace for trace in figure.data if trace.name == "CE gap closed (%)")
    assert list(gap_trace.y) == pytest.approx([0.0, 100 / 3, 200 / 3])


def test_a_student_worse_than_its_start_closes_a_negative_share(tmp_path):
    evals = [
        _record(0, "teacher", 2.0, 0.0, None, 12.0),
        _record(0, "student_init", 4.0, 0.0, 3.0, 6.0),
        _record(10, "student", 5.0, 0.5, 3.5, 2.0),
    ]
    clear_cache()
    df = competence_frame(load_run(make_run(tmp_path, "worse", steps=10, evals=evals)))
    assert df["gap_closed"].tolist() == pytest.approx([0.0, -0.5])


def test_no_reference_evaluations_gives_an_empty_frame_and_a_figure_that_says_why(tmp_path):
    clear_cache()
    df = competence_frame(load_run(make_run(tmp_path, "bare", steps=10)))
    assert df.empty and list(df.columns) == COMPETENCE_COLUMNS
    figure = competence_figure(df)
    assert "No evaluation" in figure.layout.annotations[0].text


def _curve(tmp_path, name: str, ces: dict[int, float], **config):
    """A run evaluated at the steps of `ces` (teacher CE 2, initial student CE 6)."""
    evals = [_record(0, "teacher", 2.0, 0.0, None, 12.0), _record(0, "student_init", 6.0, 0.0, 3.0, 6.0)]
    evals += [_record(step, "student", ce, 0.01, 2.0, 9.0) for step, ce in ces.items()]
    return make_run(tmp_path, name, steps=max(ces), evals=evals, config=config)


def test_knee_and_target_readings_follow_their_stated_rules(tmp_path):
    # gap closed (by hand, gap 4): 100 -> 25 %, 200 -> 40 %, 300 -> 50 %, 400 -> 52 %, 500 -> 53 %
    clear_cache()
    run = load_run(_curve(tmp_path, "long", {100: 5.0, 200: 4.4, 300: 4.0, 400: 3.92, 500: 3.88}))
    df = competence_frame(run)
    # gains per 100 steps after each evaluation: 15, 10, 2, 1 points -> the knee is at step 300
    assert knee_step(df) == 300
    reading = run_reading(df)
    assert "first closes 50% of the CE gap at step 300" in reading and "step 300." in reading


def test_no_target_and_no_knee_are_said_as_such(tmp_path):
    clear_cache()
    df = competence_frame(load_run(_curve(tmp_path, "short", {100: 5.0, 200: 4.6})))
    assert knee_step(df) is None
    reading = run_reading(df)
    assert "does not close 50% of the CE gap within its 200 steps (best 35 %)" in reading
    assert "No knee within the run" in reading


def test_the_report_section_lists_curve_runs_of_any_recipe_and_marks_the_others(tmp_path):
    make_sweep(tmp_path, "ablation", {"s0": {"seed": 0}, "s1": {"seed": 1}}, steps=200)
    _curve(tmp_path / "curve", "long", {100: 5.0, 200: 4.4, 300: 4.0}, max_steps=300)
    clear_cache()
    study = collect_study(tmp_path)
    assert [r.name for r in curve_runs(study)] == ["long"]  # the ablation runs were evaluated once
    text = competence_section(study)
    assert "### curve/long (another recipe than the study's)" in text
    assert "| 300 | 1.0 | 4.000 | 50.0 % |" in text  # 300 steps of 0.2 s each (make_metrics) = 1.0 min
    assert competence_section(collect_study(tmp_path / "ablation")) == ""
