"""Missing and duplicated steps in metrics.jsonl: a run whose log has holes is never "finished".

A killed or damaged write can cut lines out of the middle of metrics.jsonl (readers skip what
does not parse), and two writers once interleaved their steps. The trainer logs a step when
`step % log_interval == 0` or it is the last step, except steps skipped for a non-finite loss
(a `skipped_step` event), so the steps expected up to some step are known exactly; `step_problems`
compares them with what the file holds. `resume` reports the problems it finds, `adakd list` and
the dashboard's Runs page show them next to the run's state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from adakd.runs.rundir import RunDir, effective_state


def expected_steps(upto: int, log_interval: int, max_steps: int, skipped: Iterable[int] = ()) -> list[int]:
    """The steps 1..upto that the trainer writes a metrics line for."""
    skip = set(skipped)
    return [s for s in range(1, upto + 1) if (s % max(1, log_interval) == 0 or s == max_steps) and s not in skip]


def ranges(steps: Iterable[int]) -> str:
    """Sorted steps as short text: [1, 2, 3, 7] -> "1-3, 7"."""
    out: list[str] = []
    run: list[int] = []
    for s in sorted(set(steps)):
        if run and s == run[-1] + 1:
            run.append(s)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [s]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


def step_problems(steps: list[int], expected: list[int]) -> list[str]:
    """Messages for the expected steps that are missing and the steps logged more than once."""
    counts = Counter(steps)
    problems = []
    missing = [s for s in expected if s not in counts]
    if missing:
        problems.append(f"metrics.jsonl: step{'s' if len(missing) > 1 else ''} {ranges(missing)} missing")
    twice = [s for s, n in counts.items() if n > 1]
    if twice:
        problems.append(f"metrics.jsonl: step{'s' if len(twice) > 1 else ''} {ranges(twice)} logged more than once")
    return problems


def gap_problems(steps: list, config: dict, state: str, status_step, skipped: Iterable = ()) -> list[str]:
    """`step_problems` of a run's logged `steps`, given its config dict, effective state,
    status.json step and skipped steps.

    Up to which step lines are expected: the status step of a run that ended normally
    (finished or stopped), else the last logged step (a crashed or failed run may have died
    before logging its last step: that is not a hole).
    """
    steps = [s for s in steps if isinstance(s, int) and not isinstance(s, bool)]
    if not steps:  # nothing logged at all: shown as such (no loss), not as a hole
        return []
    upto = max(steps, default=0)
    if state in ("finished", "stopped") and isinstance(status_step, int):
        upto = max(upto, status_step)
    expected = expected_steps(
        upto,
        int(config.get("log_interval") or 1),
        int(config.get("max_steps") or upto),
        [s for s in skipped if isinstance(s, int)],
    )
    return step_problems(steps, expected)


def run_step_problems(run: RunDir, metrics: list[dict] | None = None) -> list[str]:
    """`gap_problems` of a run directory (config, status, events and metrics as on disk)."""
    config = (run.read_config() or {}).get("config") or {}
    metrics = run.read_metrics() if metrics is None else metrics
    status = run.read_status() or {}
    skipped = [e.get("step") for e in run.read_events() if e.get("kind") == "skipped_step"]
    return gap_problems(
        [r.get("step") for r in metrics],
        config if isinstance(config, dict) else {},
        effective_state(status),
        status.get("step"),
        skipped,
    )
