"""app/eta.py: the Train page's time left, from hand-made metrics with known times."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from app.eta import eta_seconds, seconds_per_step


def _metrics(step_times: list[tuple[int, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"step": s, "time": f"2026-12-05T10:{t}Z", "step_seconds": sec} for s, t, sec in step_times])


def test_wall_clock_rate_counts_what_runs_between_steps():
    """Steps alternate 1 s and 4 s of step time (an on-policy mix), and a 30 s probe after step
    5; the wall clock from step 1 (10:00:00) to step 11 (10:01:05) is 65 s over 10 steps: 6.5 s
    a step, whatever the last few step_seconds say (the mean of the last 3 would be 2 or 3)."""
    rows = [
        (1, "00:00", 1.0),
        (2, "00:04", 4.0),
        (3, "00:05", 1.0),
        (4, "00:09", 4.0),
        (5, "00:10", 1.0),
        (6, "00:44", 4.0),  # the probe ran before this step
        (7, "00:45", 1.0),
        (8, "00:49", 4.0),
        (9, "00:50", 1.0),
        (10, "01:04", 4.0),
        (11, "01:05", 1.0),
    ]
    m = _metrics(rows)
    assert seconds_per_step(m) == pytest.approx(6.5)
    assert eta_seconds(m, None, 11, 31) == pytest.approx(6.5 * 20)
    assert eta_seconds(m, None, 31, 31) == 0.0


def test_only_the_steps_of_the_current_process_after_a_resume():
    """Steps 1-10 ran at 10 s a step, then the run was resumed from step 10 on a faster machine:
    steps 11-16 at 2 s a step. The resume at step 10 leaves only 11-16: 10 s over 5 steps."""
    rows = [(s, f"{(s - 1) * 10 // 60:02d}:{(s - 1) * 10 % 60:02d}", 10.0) for s in range(1, 11)]
    rows += [(10 + k, f"30:{2 * k:02d}", 2.0) for k in range(1, 7)]
    events = pd.DataFrame([{"step": 0, "kind": "start"}, {"step": 10, "kind": "resume"}])
    assert seconds_per_step(_metrics(rows), events) == pytest.approx(2.0)
    assert seconds_per_step(_metrics(rows)) > 2.0  # without the resume, the old rate leaks in


def test_too_few_steps_fall_back_to_the_median_step_time():
    m = _metrics([(1, "00:00", 9.0), (2, "00:02", 2.0), (3, "00:04", 2.5)])  # span 2 < 5 steps
    assert seconds_per_step(m) == pytest.approx(2.5)
    assert math.isnan(seconds_per_step(pd.DataFrame()))
    assert math.isnan(eta_seconds(pd.DataFrame(), None, 0, 10))
