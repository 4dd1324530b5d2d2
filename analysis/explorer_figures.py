"""Figures of the token explorer (Plotly): the response as a coloured token strip, and one
token's teacher vs student top-k bars. Inputs are :class:`analysis.explorer.ExplorerResult`.

    explorer_tokens_figure(result, color_by="difficulty")   # or "group", "tau", "div_rkl", ...
    topk_figure(result, token_index=3)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from adakd import names
from analysis.style import (
    DIFFICULTY_SCALE,
    GROUP_COLORS,
    GROUP_ORDER,
    RUN_COLORS,
    apply_style,
    token_label,
)

if TYPE_CHECKING:
    from analysis.explorer import ExplorerResult

# token_difficulty's other indicators, each a column beside `difficulty` (the Hellinger score);
# topk is left out: its score needs a k.
INDICATORS = tuple(name for name in names.INDICATORS if name not in ("hellinger", "topk"))
DIVERGENCE_COLUMNS = tuple(f"div_{name}" for name in names.DIVERGENCES)
COLOR_OPTIONS = (
    "difficulty",
    "group",
    "tau",
    "tau_all",
    "entropy_student",
    "entropy_student_idts",
    "entropy_teacher",
    "p_label_teacher",
    "p_label_student",
    *INDICATORS,
    *DIVERGENCE_COLUMNS,
)
_DIVERGENCE_NAMES = {
    "fkl": "forward KL",
    "rkl": "reverse KL",
    "jsd": "generalised JSD",
    "tvd": "total variation",
    "sfkl": "skew forward KL",
    "srkl": "skew reverse KL",
    "ab": "α-β divergence",
    "akl": "adaptive KL",
}


def _divergence_label(name: str) -> str:
    params = ", ".join(f"{k} = {v:g}" for k, v in names.DIVERGENCES[name].items())
    return f"{_DIVERGENCE_NAMES.get(name, name)} ({name}{', ' + params if params else ''})"


# What each colouring option shows, as the page lists it and the colour bar names it
COLOR_LABELS: dict[str, str] = {
    "difficulty": "difficulty s (Hellinger, 0–1)",
    "group": "hard / mid / easy group",
    "tau": "τ of the LATF-selected tokens (IDTS)",
    "tau_all": "τ if every token were selected",
    "entropy_student": "student entropy (nats)",
    "entropy_student_idts": "student entropy at τ (nats)",
    "entropy_teacher": "teacher entropy (nats)",
    "p_label_teacher": "teacher p(reply token)",
    "p_label_student": "student p(reply token)",
    "fkl": "indicator: KL(teacher ‖ student)",
    "rkl": "indicator: KL(student ‖ teacher)",
    "jsd": "indicator: Jensen–Shannon (λ = ½)",
    "ce": "indicator: student cross-entropy on the reply token",
    "entropy": "indicator: student entropy",
    **{f"div_{name}": "loss term: " + _divergence_label(name) for name in names.DIVERGENCES},
}
_SHORT = {
    "difficulty": "s",
    "tau": "τ",
    "tau_all": "τ (all)",
    "entropy_student": "H student",
    "entropy_student_idts": "H student at τ",
    "entropy_teacher": "H teacher",
    "p_label_teacher": "p teacher",
    "p_label_student": "p student",
}
# the colour bar's title: short, since the figure title names the option in full
COLORBAR_TITLES = {option: _SHORT.get(option, option.removeprefix("div_")) for option in COLOR_OPTIONS}
NO_VALUE_COLOR = "#e4e4e4"


def _visible(text: str) -> str:
    """Token text with spaces, newlines and tabs made visible (as in ``token_label``)."""
    return token_label(0, text).split(": ", 1)[1]


# The token map's cells: each is CELL_PX wide in the figure's own width (what an export renders;
# the dashboard stretches it to the page), and a token's text is cut to CELL_CHARS (about 7 px
# per character at the 12 px cell font) with an ellipsis so it never runs into the next cell.
# The hover keeps the whole text.
CELL_PX, CELL_CHARS = 86, 10
# the figure's width outside the cells: left and right margins and the colour bar beside them
MAP_SIDES_PX = 180


def fit_cell(text: str, chars: int = CELL_CHARS) -> str:
    """``text`` cut to at most ``chars`` characters, the last one an ellipsis when cut."""
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _hover(row: pd.Series, topk: pd.DataFrame) -> str:
    def top(model: str) -> str:
        rows = topk[topk["model"] == model]
        return ", ".join(f"{_visible(t)} {p:.2f}" for t, p in zip(rows["token_text"], rows["prob"], strict=True))

    tau = "not selected" if np.isnan(row["tau"]) else f"{row['tau']:.3f}"
    return "<br>".join(
        [
            f"<b>{token_label(row['token_index'], row['token_text'])}</b>",
            f"group: {row['group']}{' (selected)' if row['selected'] else ''}",
            f"difficulty: {row['difficulty']:.3f}",
            f"τ: {tau} · τ_all: {row['tau_all']:.3f}",
            f"H student: {row['entropy_student']:.2f} → {row['entropy_student_idts']:.2f} after IDTS",
            f"H teacher: {row['entropy_teacher']:.2f}",
            f"p(label): teacher {row['p_label_teacher']:.3f} · student {row['p_label_student']:.3f}",
            f"teacher top-k: {top('teacher')}",
            f"student top-k: {top('student')}",
        ]
    )


def explorer_tokens_figure(
    result: ExplorerResult, color_by: str = "difficulty", *, tokens_per_row: int = 12
) -> go.Figure:
    """Response tokens laid out in rows as a heat map coloured by ``color_by`` (a numeric
    column or "group"), each cell showing its token text; hover gives group, τ, entropies and
    both models' top-k. Each cell's ``customdata`` is its token_index (−1 on padding), so a
    click or selection maps back to a row of ``result.tokens``."""
    if color_by not in COLOR_OPTIONS:
        raise ValueError(f"color_by must be one of {', '.join(COLOR_OPTIONS)} (got {color_by!r})")
    df = result.tokens
    n, width = len(df), max(1, int(tokens_per_row))
    n_rows = max(1, -(-n // width))
    z = np.full((n_rows, width), np.nan)
    text = np.full((n_rows, width), "", dtype=object)
    hover = np.full((n_rows, width), "", dtype=object)
    index = np.full((n_rows, width), -1, dtype=np.int64)
    topk_by_token = dict(tuple(result.topk.groupby("token_index")))
    for i, (_, row) in enumerate(df.iterrows()):
        r, col = divmod(i, width)
        text[r, col] = fit_cell(_visible(row["token_text"]))
        index[r, col] = int(row["token_index"])
        hover[r, col] = _hover(row, topk_by_token.get(row["token_index"], result.topk.iloc[:0]))
        z[r, col] = GROUP_ORDER.index(row["group"]) if color_by == "group" else row[color_by]
    heat = dict(
        z=z,
        text=text,
        hovertext=hover,
        customdata=index,
        texttemplate="%{text}",
        hoverinfo="text",
        xgap=2,
        ygap=2,
        name=color_by,
        textfont={"size": 12},
    )
    if color_by == "group":
        steps = [
            (0, GROUP_COLORS["hard"]),
            (1 / 3, GROUP_COLORS["hard"]),
            (1 / 3, GROUP_COLORS["mid"]),
            (2 / 3, GROUP_COLORS["mid"]),
            (2 / 3, GROUP_COLORS["easy"]),
            (1, GROUP_COLORS["easy"]),
        ]
        heat.update(
            colorscale=steps,
            zmin=-0.5,
            zmax=2.5,
            colorbar={"tickvals": [0, 1, 2], "ticktext": list(GROUP_ORDER), "title": "group"},
        )
    else:
        bounds = {"zmin": 0.0, "zmax": 1.0} if color_by == "difficulty" else {}
        heat.update(colorscale=DIFFICULTY_SCALE, colorbar={"title": COLORBAR_TITLES[color_by]}, **bounds)
    fig = go.Figure(go.Heatmap(**heat))
    blank = (index >= 0) & np.isnan(z)  # a token with no value (τ of a token LATF left out)
    if blank.any():  # grey cells with their text and a legend entry, rather than a silent gap
        fig.add_trace(
            go.Heatmap(
                z=np.where(blank, 0.0, np.nan),
                text=np.where(blank, text, ""),
                hovertext=np.where(blank, hover, ""),
                texttemplate="%{text}",
                hoverinfo="text",
                xgap=2,
                ygap=2,
                colorscale=[(0, NO_VALUE_COLOR), (1, NO_VALUE_COLOR)],
                showscale=False,
                name="no value",
                textfont={"size": 12},
            )
        )
        fig.add_trace(  # the legend entry (a heat map has none)
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                marker={
                    "symbol": "square",
                    "size": 14,
                    "color": NO_VALUE_COLOR,
                    "line": {"color": "#999999", "width": 1},
                },
                name="not selected by LATF (no τ)" if color_by == "tau" else f"no {color_by} value",
                showlegend=True,
            )
        )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    source = "reference" if result.response_source == "reference" else "teacher's greedy reply"
    title = f"Response tokens ({source}) coloured by {COLOR_LABELS[color_by]} · r = {result.ratio:g}, c = {result.c:g}"
    fig = apply_style(fig, title)
    fig.update_layout(
        width=MAP_SIDES_PX + width * CELL_PX,
        height=120 + 46 * n_rows + (30 if blank.any() else 0),
        margin={"l": 20, "r": 30},  # no axes to label on the left
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 0, "yanchor": "top"},
    )
    return fig


def topk_figure(result: ExplorerResult, token_index: int) -> go.Figure:
    """Teacher and student top-k next-token probabilities for one response token, side by side
    (the actual response token, when in a top-k, is outlined)."""
    tokens = result.tokens
    if not 0 <= int(token_index) < len(tokens):
        raise ValueError(f"token_index must be in [0, {len(tokens) - 1}] (got {token_index})")
    row = tokens.iloc[int(token_index)]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("teacher", "student"), horizontal_spacing=0.18)
    for col, (who, color) in enumerate((("teacher", RUN_COLORS[0]), ("student", RUN_COLORS[1])), start=1):
        rows = result.topk[(result.topk["token_index"] == int(token_index)) & (result.topk["model"] == who)]
        labels = [token_label(r, t) for r, t in zip(rows["rank"], rows["token_text"], strict=True)]
        fig.add_trace(
            go.Bar(
                x=rows["prob"],
                y=labels,
                orientation="h",
                name=f"{who} top-k",
                marker_color=color,
                marker_line={"color": ["#000000" if hit else color for hit in rows["is_label"]], "width": 2},
                hovertemplate="%{y}: p = %{x:.3f}<extra>" + who + "</extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="probability", range=[0, 1], row=1, col=col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    title = (
        f"Top-k at {token_label(row['token_index'], row['token_text'])} · group {row['group']}, "
        f"difficulty {row['difficulty']:.3f}"
    )
    fig = apply_style(fig, title)
    fig.update_layout(showlegend=False, height=max(300, 90 + 40 * int(result.topk["rank"].max())))
    return fig
