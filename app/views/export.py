"""Report bundle: chosen figures + their data + the runs' config and provenance, as one zip."""

from pathlib import Path

import streamlit as st

from app import components as ui
from app.figure_catalogue import PER_RUN, SEVERAL_RUNS, build

ui.header(
    "Report bundle",
    "Pack chosen figures (PNG / SVG / PDF / HTML), the data behind each one "
    "(CSV), the runs' config.json and status.json and a provenance record (package versions, "
    "git revision, seeds) into one zip for a report.",
)

paths = ui.runs_or_stop("Runs", key="export-runs", none_chosen="Pick at least one run.")

c1, c2 = st.columns(2)
per_run = c1.multiselect(
    "Figures of each run",
    list(PER_RUN),
    default=list(PER_RUN)[:3],
    key="export-per-run",
    format_func=lambda k: PER_RUN[k][0],
)
several = c2.multiselect(
    "Figures over the runs",
    list(SEVERAL_RUNS),
    default=list(SEVERAL_RUNS)[:1],
    key="export-several",
    format_func=lambda k: SEVERAL_RUNS[k][0],
)
formats = st.pills(
    "Image formats",
    ["png", "svg", "pdf", "html"],
    default=["png", "html"],
    selection_mode="multi",
    key="export-formats",
    help="HTML is interactive and needs no browser (the pages share one figures/plotly.min.js: unzip "
    "them together); PNG/SVG/PDF are rendered by Kaleido.",
)
from analysis.bundle import report_bundle  # noqa: E402
from analysis.export import chromium_available  # noqa: E402

if any(f in ("png", "svg", "pdf") for f in formats or []) and not chromium_available():
    st.warning(
        "No Chrome/Chromium found, so PNG/SVG/PDF cannot be rendered here: install `chromium` or keep only HTML.",
        icon=":material/warning:",
    )

figures, frames, problems = build(per_run, several, paths)
for problem in problems:
    st.warning(problem, icon=":material/warning:")
st.caption(
    f"{len(figures)} figures from {len(paths)} run(s): " + ", ".join(figures) if figures else "No figures chosen."
)
if (
    figures
    and formats
    and st.button("Build the bundle", type="primary", icon=":material/inventory_2:", key="export-build")
):
    with st.spinner(f"Rendering {len(figures) * len(formats)} files …"):
        try:
            data = report_bundle(figures, frames, [Path(p) for p in paths], formats=tuple(formats))
        except Exception as err:
            st.error(f"Could not build the bundle: {err}", icon=":material/error:")
        else:
            st.session_state["export-bundle"] = data
bundle = st.session_state.get("export-bundle")
if bundle:
    st.success(f"Bundle ready: {len(bundle) / 1e6:.2f} MB", icon=":material/check_circle:")
    st.download_button(
        "Download adakd-report.zip",
        bundle,
        "adakd-report.zip",
        "application/zip",
        key="export-download",
        icon=":material/download:",
        on_click="ignore",
    )

if figures:
    with st.expander("Preview"):
        name = st.selectbox("Figure", list(figures), key="export-preview")
        st.plotly_chart(figures[name], width="stretch", key="export-preview-chart")
