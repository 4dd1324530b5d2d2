"""Time left for a running run, from a smoothed step time (the Train page's progress line).

The mean of the last few ``step_seconds`` swings with the step mix: on-policy regimes alternate
~1 s ground-truth steps with ~4 s generated ones, and probes, evaluations and validations run
between steps without being in any step's time. So the estimate is wall-clock: over the last
WINDOW logged steps of the current process (the steps since its start or its last resume),

    seconds per step = (time of the last row − time of the first) / (their step difference)

which counts everything that happens per step on average, probes and evaluations included, and
moves slowly. Before two such rows are WINDOW_MIN steps apart it falls back to the median
``step_seconds`` (robust to the slow first step). The metrics' ``time`` has one-second
resolution, hence the minimum span.
"""

from __future__ import annotations

import math

import pandas as pd

WINDOW = 50  # logged steps the wall-clock rate is measured over
WINDOW_MIN = 5  # fewer steps than this between the first and last row: median step time instead


def seconds_per_step(metrics: pd.DataFrame, events: pd.DataFrame | None = None) -> float:
    """The smoothed wall-clock seconds per optimiser step of the current process (see the
    module docstring); NaN without logged steps."""
    if metrics.empty or "step" not in metrics:
        return math.nan
    rows = metrics
    if events is not None and not events.empty and "kind" in events:
        resumes = events.loc[events["kind"] == "resume", "step"]
        if len(resumes):  # the steps this process trained; earlier ones were timed by another
            rows = rows[rows["step"] > int(resumes.iloc[-1])]
    rows = rows.tail(WINDOW)
    if len(rows) >= 2 and "time" in rows:
        times = pd.to_datetime(rows["time"], utc=True, errors="coerce")
        span = int(rows["step"].iloc[-1]) - int(rows["step"].iloc[0])
        if span >= WINDOW_MIN and times.notna().iloc[[0, -1]].all():
            return float((times.iloc[-1] - times.iloc[0]).total_seconds()) / span
    if "step_seconds" in rows:
        seconds = rows["step_seconds"].dropna()
        if len(seconds):
            return float(seconds.median())
    return math.nan


def eta_seconds(metrics: pd.DataFrame, events: pd.DataFrame | None, step: int, total: int) -> float:
    """Seconds until step `total` at the smoothed rate; NaN when it cannot be estimated."""
    if step >= total:
        return 0.0
    return seconds_per_step(metrics, events) * (total - step)
