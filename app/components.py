"""Small widgets shared by the pages: header, run pickers, empty states, figures with exports.

Figures are shown with Plotly's own toolbar (its camera button saves a PNG in the browser)
and a row of download buttons. PNG, SVG, PDF and HTML are produced only when a button is
clicked (`st.download_button(data=callable)`), so a page costs one chart render, not four
static exports.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analysis.runs import Run
from app import state, url_state

log = logging.getLogger(__name__)

STATE_COLOURS = {
    "finished": "green",
    "running": "blue",
    "stopped": "orange",
    "failed": "red",
    "crashed": "red",
    "unknown": "gray",
}
STATE_TEXT_COLOURS = {
    "finished": "#2e7d32",
    "running": "#1565c0",
    "stopped": "#e65100",
    "failed": "#c62828",
    "crashed": "#c62828",
    "queued": "#6a1b9a",
}
MIME = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf", "html": "text/html", "csv": "text/csv"}
TOKENS_PER_ROW = 10  # token explorer: cells per row of the token map
TRAIN_PAGE = "views/train.py"
RUNS_PAGE = "views/runs.py"


def header(title: str, explanation: str) -> None:
    """Page title and a one-line explanation under it."""
    st.title(title)
    st.caption(explanation)


def badge(state_name: str) -> str:
    """Markdown badge for a run state, e.g. :green-badge[finished]."""
    return f":{STATE_COLOURS.get(state_name, 'gray')}-badge[{state_name}]"


def state_label(state_name: str) -> str:
    """Plain-text state for tables and select boxes (no emoji: not every system font has them)."""
    return str(state_name)


def empty_state(message: str, *, train_link: bool = True) -> None:
    """Friendly explanation of why there is nothing to show, with the way forward."""
    st.info(message, icon=":material/info:")
    if train_link:
        st.page_link(TRAIN_PAGE, label="Go to the Train page", icon=":material/play_arrow:")


def no_runs() -> None:
    empty_state("No runs yet — start the demo on the Train page (a few minutes on a laptop CPU).")


def show_problems(run: Run) -> None:
    """Problems found while reading a damaged run, as one warning (the rest still works)."""
    problems = run.problems
    if problems:
        shown = "\n".join(f"- {p}" for p in problems[:8])
        more = f"\n- … and {len(problems) - 8} more" if len(problems) > 8 else ""
        st.warning(
            f"**{run.name}** was read with problems; what could be read is shown.\n\n{shown}{more}",
            icon=":material/warning:",
        )


def remote_code_notice(config) -> None:
    """A warning wherever a config with trust_remote_code on is shown or used: loading its models
    runs Python code shipped with the model folder (or hub repository)."""
    on = config.get("trust_remote_code") if isinstance(config, dict) else getattr(config, "trust_remote_code", False)
    if on:
        st.warning(
            "**trust_remote_code is on**: loading these models runs the Python code that ships "
            "with them, in the training process and in this dashboard. Use it only for model "
            "folders you trust (see SECURITY.md).",
            icon=":material/gpp_maybe:",
        )


def _run_label(table: pd.DataFrame):
    names = dict(zip(table["path"].astype(str), table["name"].astype(str), strict=True))
    states = dict(zip(table["path"].astype(str), table["state"].astype(str), strict=True))
    samples = dict(zip(table["path"].astype(str), table["is_sample"].astype(bool), strict=True))
    methods = dict(zip(table["path"].astype(str), table["method"].astype(str), strict=True))

    def label(path: str) -> str:
        sample = ", sample" if samples.get(path) else ""
        return f"{names.get(path, Path(path).name)} — {methods.get(path, '')} ({states.get(path, 'unknown')}{sample})"

    return label


def run_picker(label: str = "Run", *, key: str, where=None) -> str | None:
    """Select box over all runs, defaulting to the run selected on the Runs page.

    `where(row) -> bool` filters the rows (e.g. runs with probes). Choosing a run here makes it
    the first selected run, so the other pages follow. Returns the run path or None.
    """
    table = state.list_runs()
    if where is not None and len(table):
        table = table[table.apply(where, axis=1)]
    if not len(table):
        return None
    paths = table["path"].astype(str).tolist()
    chosen = state.selected_paths()
    current = next((p for p in chosen if p in paths), paths[0])

    def remember() -> None:
        picked = st.session_state[key]
        state.set_selected([picked] + [p for p in state.selected_paths() if p != picked])

    if st.session_state.get(key) not in paths:
        st.session_state[key] = current
    return st.selectbox(label, paths, key=key, format_func=_run_label(table), on_change=remember)


def runs_multi_picker(label: str = "Runs", *, key: str, where=None, default_all: bool = False) -> list[str]:
    """Multi-select over runs, defaulting to the Runs page selection."""
    table = state.list_runs()
    if where is not None and len(table):
        table = table[table.apply(where, axis=1)]
    paths = table["path"].astype(str).tolist()

    def default() -> list[str]:
        chosen = [p for p in state.selected_paths() if p in paths]
        return paths if default_all else comparison_default(table, chosen)

    # kept across pages and in the URL; runs deleted since (or not in a shared link's roots) drop out
    value = url_state.keep(key, default, url_state.RUNS)
    if any(p not in paths for p in value):
        st.session_state[key] = [p for p in value if p in paths] or default()
        url_state.keep(key, default, url_state.RUNS)
    return st.multiselect(label, paths, key=key, format_func=_run_label(table))


def run_or_stop(*, key: str) -> Run:
    """The run chosen in a :func:`run_picker`, loaded, with its reading problems shown.

    With no runs at all, says how to start one and stops the page (``st.stop``).
    """
    path = run_picker(key=key)
    if path is None:
        no_runs()
        st.stop()
    run = state.load_run(path)
    show_problems(run)
    return run


def runs_or_stop(label: str, *, key: str, none_chosen: str) -> list[str]:
    """Paths of the runs chosen in a :func:`runs_multi_picker` labelled ``label``.

    Stops the page (``st.stop``) with the way forward when there are no runs at all, or with
    the message ``none_chosen`` when the user has cleared the picker.
    """
    if state.list_runs().empty:
        no_runs()
        st.stop()
    paths = runs_multi_picker(label, key=key)
    if not paths:
        empty_state(none_chosen, train_link=False)
        st.stop()
    return paths


def comparison_default(table: pd.DataFrame, chosen: list[str]) -> list[str]:
    """Runs to compare before the user picks: the Runs page selection when it holds two or
    more; else the sweep (same folder) of the selected run or, failing that, of the first run
    in the table that belongs to a sweep; else every run. One sweep reads well in one figure;
    every run of every sweep overlaps into an unreadable tangle."""
    if len(chosen) >= 2:
        return chosen
    paths = table["path"].astype(str).tolist()
    in_sweep = table.loc[table["sweep"].astype(str) != "", "path"].astype(str).tolist()
    anchor = next((p for p in chosen if p in in_sweep), in_sweep[0] if in_sweep else None)
    if anchor is None:
        return paths
    folder = Path(anchor).parent
    return [p for p in paths if Path(p).parent == folder]


def table_with_csv(frame: pd.DataFrame, file_name: str, *, key: str) -> None:
    """A table (no index column) with a "CSV" download button of the same rows under it."""
    st.dataframe(frame, hide_index=True)
    st.download_button(
        "CSV",
        frame.to_csv(index=False),
        file_name,
        "text/csv",
        key=key,
        icon=":material/download:",
        on_click="ignore",
    )


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower() or "figure"


def _exporter(fig, fmt: str):
    def make() -> bytes:
        from analysis.export import figure_to_bytes

        return figure_to_bytes(fig, fmt)

    return make


def _csv(frame: pd.DataFrame):
    def make() -> bytes:
        from analysis.export import frame_to_csv

        data = frame_to_csv(frame)
        return data.encode() if isinstance(data, str) else data

    return make


def themed(fig):
    """``fig`` as the page shows it: restyled for a dark page when the viewer chose the dark
    theme (Settings → Theme, or the system's setting), else ``fig`` itself."""
    from analysis.style import on_dark, theme_neutral

    return on_dark(fig) if st.context.theme.type == "dark" else theme_neutral(fig)


def figure(
    fig,
    frame: pd.DataFrame | None,
    name: str,
    *,
    key: str,
    caption: str | None = None,
    height: int | None = None,
    legend_top: bool = False,
    on_select: bool = False,
):
    """A Plotly chart with PNG / SVG / PDF / HTML / CSV download buttons under it.

    `name` is the download file stem; `key` must be unique on the page. Images are rendered
    by Kaleido in the server only when their button is clicked.
    """
    if height:
        fig.update_layout(height=height)
    if legend_top:  # narrow columns: a legend beside the plot would cover the right axis
        fig.update_layout(legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1})
    stem = slug(name)
    event = st.plotly_chart(
        themed(fig),  # the downloads below keep the light original
        width="stretch",
        key=f"chart-{key}",
        config={"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": stem, "scale": 2}},
        **({"on_select": "rerun", "selection_mode": "points"} if on_select else {}),
    )
    if caption:
        st.caption(caption)
    row = st.container(horizontal=True, gap="small", vertical_alignment="center", key=f"downloads-{key}")
    row.caption(":material/download: Download", width="content")
    for fmt in ("png", "svg", "pdf", "html"):
        row.download_button(
            fmt.upper(),
            data=_exporter(fig, fmt),
            file_name=f"{stem}.{fmt}",
            mime=MIME[fmt],
            key=f"dl-{key}-{fmt}",
            on_click="ignore",
            type="tertiary",
            help=f"The figure as {fmt.upper()}" + (" (rendered on click)" if fmt != "html" else ""),
        )
    if frame is not None:
        row.download_button(
            "CSV",
            data=_csv(frame),
            file_name=f"{stem}.csv",
            mime=MIME["csv"],
            key=f"dl-{key}-csv",
            on_click="ignore",
            type="tertiary",
            help="The data behind the figure",
        )
    return event if on_select else None


def clickable_cells(fig, n: int, width: int) -> None:
    """Make the cells of a token heat map clickable: Plotly reports no click on heat maps,
    so an invisible marker sits on each cell (carrying the cell's hover text and, as
    customdata, the token index = row · width + column)."""
    heat = fig.data[0]
    hover = heat.hovertext
    rows = [i // width for i in range(n)]
    cols = [i % width for i in range(n)]
    texts = [hover[r][c] for r, c in zip(rows, cols, strict=True)] if hover is not None else None
    click_targets(fig, cols, rows, list(range(n)), texts, size=34)


def click_targets(fig, x, y, customdata, hovertext=None, *, size: int = 14) -> None:
    """Invisible square markers at (x, y) that a click selects (``on_select`` reports their
    ``customdata``); the heat maps' own hover is switched off, the markers carry ``hovertext``."""
    fig.update_traces(hoverinfo="skip", selector={"type": "heatmap"})  # every layer: the markers hover
    fig.add_trace(
        go.Scatter(
            x=list(x),
            y=list(y),
            mode="markers",
            customdata=list(customdata),
            hovertext=hovertext,
            hoverinfo="text" if hovertext is not None else "skip",
            showlegend=False,
            name="tokens",
            marker={"size": size, "symbol": "square", "opacity": 0},
        )
    )


def guarded(what: str):
    """Context manager: show an exception while building `what` as an st.error, not a traceback."""
    return _Guard(what)


class _Guard:
    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if not isinstance(exc, Exception):  # no error, or Streamlit's rerun/stop control flow
            return False
        st.error(f"Could not show {self.what}: {type(exc).__name__}: {exc}", icon=":material/error:")
        log.warning("while showing %s", self.what, exc_info=(exc_type, exc, tb))
        return True
