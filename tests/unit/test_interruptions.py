"""analysis/figures/interruptions.py: stops, failures, kills and resumes read from hand-written
events, and where they are drawn (one-run figures: vertical lines; Compare: the run's own line)."""

from __future__ import annotations

import pandas as pd

from analysis.figures.compare import loss_curves_figure, loss_curves_frame
from analysis.figures.dynamics import loss_ratio_figure, loss_ratio_frame
from analysis.figures.interruptions import interruptions
from analysis.runs import load_run
from tests.rundir_factory import make_run


def _events(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame([{"message": "", **r} for r in rows])


def test_each_kind_of_interruption_gets_its_sentence():
    events = _events(
        {"step": 0, "kind": "start"},
        {"step": 5, "kind": "stopped"},
        {"step": 5, "kind": "resume"},  # written before previous_state existed: read the stop
        {"step": 10, "kind": "resume", "previous_state": "crashed", "previous_step": 12},
        {"step": 12, "kind": "failed"},  # failed right after its checkpoint (a run of before previous_state)
        {"step": 12, "kind": "resume"},
        {"step": 20, "kind": "resume"},  # nothing recorded before it
        {"step": 25, "kind": "stopped"},  # not resumed (yet)
    )
    marks = interruptions(events)
    assert marks["step"].tolist() == [5, 10, 12, 20, 25]
    assert marks["kind"].tolist() == ["resumed", "resumed", "resumed", "resumed", "stopped"]
    assert marks["label"].tolist() == [
        "stopped after step 5, resumed",
        "crashed (process killed) at step 12, resumed from step 10",
        "failed at step 12, resumed",
        "interrupted with no stop recorded (killed?), resumed from step 20",
        "stopped after step 25",
    ]
    assert interruptions(None).empty and interruptions(_events({"step": 0, "kind": "start"})).empty


def test_the_resume_events_own_fields_win_over_an_older_stop_event():
    events = _events(
        {"step": 3, "kind": "stopped"},
        {"step": 3, "kind": "resume", "previous_state": "failed", "previous_step": 7},
    )
    assert interruptions(events)["label"].tolist() == ["failed at step 7, resumed from step 3"]


def test_one_run_figure_draws_a_line_per_interruption(tmp_path):
    events = [
        {"step": 0, "kind": "start", "message": "", "time": "2026-12-05T10:00:00Z"},
        {"step": 4, "kind": "stopped", "message": "", "time": "2026-12-05T10:01:00Z"},
        {"step": 4, "kind": "resume", "message": "", "time": "2026-12-05T10:02:00Z", "previous_state": "stopped"},
    ]
    run = load_run(make_run(tmp_path, "r", steps=8, events=events, tokens=False, gradients=False))
    fig = loss_ratio_figure(loss_ratio_frame(run), events=run.events)
    lines = [s for s in fig.layout.shapes if s.type == "line" and s.line.dash == "dot"]
    assert [s.x0 for s in lines] == [4]
    notes = [a for a in fig.layout.annotations if a.text == "resumed"]
    assert len(notes) == 1 and "stopped after step 4, resumed" in notes[0].hovertext
    plain = load_run(make_run(tmp_path, "plain", steps=8, tokens=False, gradients=False))
    fig = loss_ratio_figure(loss_ratio_frame(plain), events=plain.events)
    assert not [s for s in fig.layout.shapes if s.type == "line" and s.line.dash == "dot"]


def test_compare_marks_each_run_on_its_own_line(tmp_path):
    resumed = [
        {"step": 0, "kind": "start", "message": "", "time": "2026-12-05T10:00:00Z"},
        {"step": 3, "kind": "resume", "message": "", "time": "2026-12-05T10:02:00Z", "previous_state": "crashed"},
    ]
    a = load_run(make_run(tmp_path, "a", steps=6, events=resumed, tokens=False, gradients=False))
    b = load_run(make_run(tmp_path, "b", steps=6, tokens=False, gradients=False))
    frame = loss_curves_frame([a, b], metric="kd")
    marked = frame[frame["interruption"].notna()]
    assert marked[["run", "step"]].values.tolist() == [["a", 3]]
    fig = loss_curves_figure(frame)
    ticks = [t for t in fig.data if t.name.endswith(": stop / resume")]
    assert len(ticks) == 1 and list(ticks[0].x) == [3]
    assert "crashed (process killed) at step 3, resumed" in ticks[0].text[0]
    # seed means have no single run's stops to show
    assert not [t for t in loss_curves_figure(frame, aggregate_seeds=True).data if "stop / resume" in t.name]
