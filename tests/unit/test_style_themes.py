"""The dashboard's two looks of one styled figure (analysis.style): on_dark for the dark theme,
theme_neutral for the light one; exports keep the original."""

from __future__ import annotations

import plotly.graph_objects as go

from analysis.style import GROUP_COLORS, ON_DARK, apply_style, on_dark, theme_neutral


def styled() -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[1, 2], line={"color": GROUP_COLORS["hard"]}, name="hard")
    fig.add_scatter(x=[0, 1], y=[2, 1], line={"color": "#333333"}, name="reference")
    fig.add_hline(y=0.0, line_color="#444444")
    return apply_style(fig, "title")


def test_on_dark_swaps_the_neutrals_and_keeps_the_meaningful_colours():
    fig = styled()
    before = fig.to_json()
    dark = on_dark(fig)
    assert fig.to_json() == before  # the original (what an export renders) is untouched
    # text, legend box and background come from the page's chart theme (instant on a theme switch)
    assert dark.layout.font.color is None and dark.layout.legend.bgcolor is None and dark.layout.paper_bgcolor is None
    assert dark.layout.template.layout.paper_bgcolor != fig.layout.template.layout.paper_bgcolor  # plotly_dark
    assert dark.layout.xaxis.linecolor == ON_DARK["#444444"] and dark.layout.xaxis.gridcolor == ON_DARK["#e5e5e5"]
    assert dark.data[0].line.color == GROUP_COLORS["hard"]  # a group's colour means something: kept
    assert dark.data[1].line.color == ON_DARK["#333333"]  # a near-black line would vanish: lightened
    assert dark.layout.shapes[0].line.color == ON_DARK["#444444"]
    assert list(dark.data[0].y) == [1, 2] and dark.layout.title.text == "title"


def test_theme_neutral_leaves_text_colour_and_legend_box_to_the_page():
    fig = styled()
    neutral = theme_neutral(fig)
    assert fig.layout.font.color == "#222222" and fig.layout.legend.bgcolor  # original untouched
    assert neutral.layout.font.color is None and neutral.layout.legend.bgcolor is None
    assert neutral.layout.xaxis.linecolor == fig.layout.xaxis.linecolor and neutral.data[1].line.color == "#333333"
