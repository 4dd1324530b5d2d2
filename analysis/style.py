"""Paper-ready look for every figure: colours, fonts, axis labels with units.

GROUP_COLORS follow the paper (hard blue, easy orange; mid grey). RUN_COLORS is the
Okabe-Ito colour-blind-safe palette (its yellow swapped for a dark wine) for one line per run.
`apply_style(fig)` gives a white template, readable font sizes and visible axes; every figure function calls it last.
`theme_neutral(fig)` and `on_dark(fig)` are the copies the dashboard shows in its light and dark theme.
"""

from __future__ import annotations

import plotly.graph_objects as go

GROUP_ORDER = ("hard", "mid", "easy")
GROUP_COLORS = {"hard": "#1f77b4", "mid": "#7f7f7f", "easy": "#ff7f0e"}
# Okabe-Ito without its yellow (#F0E442, barely visible on white), then Paul Tol's wine.
RUN_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#000000", "#882255"]
DIFFICULTY_SCALE = "Viridis"
FONT_FAMILY = "Arial, Helvetica, sans-serif"
FONT_SIZE = 14

# Axis titles with units, shared by all figures so they read the same everywhere.
LABELS = {
    "step": "training step",
    "difficulty": "difficulty s (Hellinger, 0–1)",
    "loss": "loss (nats/token)",
    "kd": "distillation loss (nats/token)",
    "ce": "cross-entropy (nats/token)",
    "ratio": "LATF ratio r (fraction of tokens)",
    "mean_tau": "mean τ of selected tokens",
    "ctkd_tau": "CTKD learned τ",
    "ctkd_lambda": "gradient-reversal strength λ",
    "tau": "temperature τ",
    "entropy_before": "student entropy before IDTS (nats)",
    "entropy_after": "student entropy after IDTS (nats)",
    "count": "tokens (count)",
    "cos_sft": "cos(group grad, SFT grad)",
    "cos_total": "cos(group grad, total grad)",
    "norm_share": "gradient-norm share (%)",
    "rouge_l": "ROUGE-L (F, ×100)",
    "c": "IDTS strength c",
    "token": "response token (index: text)",
}


def run_color(index: int) -> str:
    """Colour of the index-th run (cycles through RUN_COLORS)."""
    return RUN_COLORS[index % len(RUN_COLORS)]


def apply_style(fig: go.Figure, title: str | None = None, *, secondary_y: bool = False) -> go.Figure:
    """White template, 14 pt font, outlined axes with outside ticks; returns `fig`.

    secondary_y: the figure has a right-hand y axis (``make_subplots(specs=[[{"secondary_y":
    True}]])``); its y axis lines are then not mirrored, as the mirror would hide that axis line.
    """
    fig.update_layout(
        template="plotly_white",
        font={"family": FONT_FAMILY, "size": FONT_SIZE, "color": "#222222"},
        # aligned with the plot's left edge, not the page's (an export's title is not flush left)
        title={"text": title, "x": 0.0, "xref": "paper", "xanchor": "left", "font": {"size": FONT_SIZE + 3}}
        if title
        else fig.layout.title,
        legend={"bgcolor": "rgba(255,255,255,0.8)", "font": {"size": FONT_SIZE - 1}},
        margin={"l": 70, "r": 30, "t": 60 if title else 30, "b": 60},
        hoverlabel={"font": {"family": FONT_FAMILY}},
    )
    axis = {
        "showline": True,
        "linecolor": "#444444",
        "mirror": True,
        "ticks": "outside",
        "gridcolor": "#e5e5e5",
        "zeroline": False,
        "title_font": {"size": FONT_SIZE},
        "tickfont": {"size": FONT_SIZE - 2},
    }
    fig.update_xaxes(**axis)
    fig.update_yaxes(**{**axis, "mirror": not secondary_y})
    fig.update_annotations(font_size=FONT_SIZE)  # subplot titles
    return fig


# The light style's line neutrals (axis lines, grid, the near-black lines of reference curves,
# white marker outlines, the empty-figure message), each mapped to one that reads on a dark page.
# Colours that carry meaning (groups, runs, colour scales) are not in the map.
ON_DARK = {
    "#000000": "#f0f0f0",
    "#222222": "#e6e6e6",
    "#333333": "#d9d9d9",
    "#444444": "#bfbfbf",
    "#666666": "#a6a6a6",
    "#e5e5e5": "#3a3936",
    "#ffffff": "#171614",
}


def _swap_neutrals(value):
    if isinstance(value, dict):
        return {k: _swap_neutrals(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_swap_neutrals(v) for v in value]
    if isinstance(value, str):
        return ON_DARK.get(value.lower().replace(" ", ""), value)
    return value  # numbers and data arrays (numpy) are left as they are


def theme_neutral(fig: go.Figure) -> go.Figure:
    """A copy of a styled figure for the dashboard: its text colour and legend box are left to
    Streamlit's chart theme, which also supplies the background, so a switch of theme from the
    menu (no script rerun) keeps every chart readable at once. ``fig`` is not changed: exports
    and report bundles keep the print-ready original."""
    out = go.Figure(fig)
    out.layout.font.color = None
    out.layout.legend.bgcolor = None
    return out


def on_dark(fig: go.Figure) -> go.Figure:
    """:func:`theme_neutral` for a dark page, with plotly's dark template and every light-style
    line neutral swapped through ``ON_DARK`` (a near-black reference line would vanish)."""
    spec = fig.to_plotly_json()
    layout = {k: v for k, v in spec.get("layout", {}).items() if k != "template"}
    out = go.Figure({"data": _swap_neutrals(spec.get("data", [])), "layout": _swap_neutrals(layout)})
    out.update_layout(template="plotly_dark")
    return theme_neutral(out)


def empty_figure(message: str, title: str | None = None) -> go.Figure:
    """A styled blank figure that says why there is nothing to show."""
    fig = go.Figure()
    fig.add_annotation(
        text=message,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font={"size": FONT_SIZE + 1, "color": "#666666"},
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return apply_style(fig, title)


def hex_to_rgba(color: str, alpha: float) -> str:
    """ "#1f77b4", 0.2 -> "rgba(31,119,180,0.2)" (for translucent bands)."""
    color = color.lstrip("#")
    r, g, b = (int(color[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def token_label(index: int, text: str) -> str:
    """Readable, unique token label: "12: ␣world" (spaces, newlines and tabs made visible)."""
    visible = str(text).replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") if text is not None else "?"
    return f"{int(index)}: {visible}"
