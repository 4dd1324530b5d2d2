"""Where a run was stopped, crashed or resumed, read from its events.jsonl, and the marks that
show it on a curve of that run.

    marks = interruptions(run.events)          # one row per interruption
    mark_interruptions(fig, marks)              # dotted vertical lines on a one-run figure

A resume continues from a checkpoint at step s (its event is logged at s); the steps after s
that the interrupted process had already logged are dropped on resume (the run directory keeps
one history), so a curve is continuous at s and the mark belongs there. The resume event's
`previous_state` and `previous_step` say why it was needed (runs written before they existed:
the stop or failure event before it, when it survived the truncation):

    stopped at a   (Stop, Ctrl-C, SIGTERM: a checkpoint at a, so s = a)
    failed at a    (an exception; resumed from the last checkpoint s ≤ a)
    crashed at a   (the process was killed, e.g. kill -9 or a power cut; s = last checkpoint)

A stop or failure with no resume after it (the run is stopped now) is marked at its own step.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

INTERRUPTION_COLUMNS = ["step", "kind", "label"]
MARK_COLOR = "#777777"


def interruptions(events: pd.DataFrame | None) -> pd.DataFrame:
    """One row per interruption, in the order they happened.

    step: where the mark goes (the step resumed from, or the step a run stopped at and has not
    been resumed since); kind: "resumed" | "stopped" | "failed"; label: a sentence for the hover.
    """
    rows: list[dict] = []
    if events is None or events.empty or "kind" not in events:
        return pd.DataFrame(columns=INTERRUPTION_COLUMNS)
    pending: tuple[str, int] | None = None  # the last stop / failure since the last resume
    for event in events.to_dict("records"):
        kind, step = event["kind"], int(event["step"])
        if kind in ("stopped", "failed"):
            pending = (str(kind), step)
        elif kind == "resume":
            previous = event.get("previous_state")
            if isinstance(previous, str):
                before = event.get("previous_step")
                # NaN (absent in this row) != NaN
                at = int(before) if isinstance(before, int | float) and before == before else step
                pending = (previous, at)
            rows.append({"step": step, "kind": "resumed", "label": _resume_label(pending, step)})
            pending = None
    if pending is not None:
        kind, step = pending
        rows.append(
            {
                "step": step,
                "kind": kind,
                "label": f"stopped after step {step}" if kind == "stopped" else f"failed at step {step}",
            }
        )
    return pd.DataFrame(rows, columns=INTERRUPTION_COLUMNS)


def _resume_label(pending: tuple[str, int] | None, step: int) -> str:
    if pending is None:
        return f"interrupted with no stop recorded (killed?), resumed from step {step}"
    state, at = pending
    where = "" if at == step else f" from step {step}"
    if state == "stopped":
        return f"stopped after step {at}, resumed{where}"
    if state == "failed":
        return f"failed at step {at}, resumed{where}"
    if state == "crashed":
        return f"crashed (process killed) at step {at}, resumed{where}"
    return f"{state} at step {at}, resumed{where}"


def mark_interruptions(fig: go.Figure, marks: pd.DataFrame) -> go.Figure:
    """A dotted vertical line per interruption across the whole plot, captioned "resumed" /
    "stopped" / "failed" at the top; the caption's hover gives the sentence. For figures of one
    run (several runs mark their own lines instead: analysis.figures.compare)."""
    for step, kind, label in zip(marks["step"], marks["kind"], marks["label"], strict=True):
        fig.add_vline(
            x=step,
            line={"dash": "dot", "width": 1.5, "color": MARK_COLOR},
            annotation={
                "text": str(kind),
                "hovertext": f"step {step}: {label}",
                "font": {"size": 11, "color": MARK_COLOR},
                "yanchor": "bottom",
            },
            annotation_position="top",
        )
    return fig
